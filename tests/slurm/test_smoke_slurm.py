"""The smoke config through the real SLURM profile, against a local run of the same config.

One SLURM run serves every test here (module fixture): snakemake with `--workflow-profile` = the real
workflow/profiles/slurm merged with profile_overrides.yaml (what the 2-CPU test node cannot grant), account and
partitions from the environment. While it runs, one training job (an SC-SDPO run: policy, EMA teacher, optimizer
and scheduler state all have to survive) is `scancel`-ed as soon as its first checkpoint is complete; the profile's
retries resubmit it and the trainer resumes from that checkpoint. Since every random stream of the trainer is a
function of (seed, step), the resumed run must end exactly where an uninterrupted local run ends.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .slurm_tools import (
    ACCOUNT,
    CLUSTER_ENV,
    DAG_TIMEOUT_S,
    GROUP_BENCHMARKS,
    REPO,
    SLURM_SMOKE_ARGS,
    SMOKE_CONFIG,
    SNAKEMAKE,
    Run,
    cluster_env,
    console,
    parse_mem_mb,
    parse_minutes,
    parse_tres,
    requested_resources,
    rule_of,
    run_snakemake,
    sacct_jobs,
    wildcards_of,
    write_local_profile,
)

pytestmark = pytest.mark.slow

# Which outputs are deterministic (found by comparing a local and a SLURM run): all of them, data, base model,
# checkpoints, metrics, evaluations and tables, except what measures the clock (step times, the cost table's hours)
# and the trainer's `resume` flag in a run's config.yaml. Keys/columns whose name contains one of these are ignored:
VOLATILE_KEY_PARTS = ("time", "timing", "date", "duration", "elapsed", "seconds", "hours", "host", "pid", "rss")
VOLATILE_KEY_SUFFIXES = ("_s",)  # e.g. the cost table's median_step_s
RUN_MODE_KEYS = ("resume", "progress_bar")  # how a run was started, not what it computed (as prepare_run_dir)
# not compared: rendered figures (embed software metadata and dates), Snakemake's benchmark files (measured times
# and memory), and the cost table's text renderings (its CSV is compared without the clock and memory columns)
UNCOMPARED_SUFFIXES = (".png", ".pdf", ".log", ".html", ".tsv")
UNCOMPARED_FILES = ("results/tables/cost_table.md", "results/tables/cost_table.tex")


def killed_run_wildcards() -> tuple[str, str, str, int]:
    """The SC-SDPO training run of the smoke config that the test kills: its (model, task, method, seed)."""
    from scsdpo_verl.pipeline import grid_runs

    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    methods = {**config["methods"], **config.get("ablation", {}).get("methods", {})}
    for model, task, method, seed in grid_runs(config):
        if methods[method]["algorithm"] == "sc_sdpo":
            return model, task, method, seed
    raise AssertionError(f"{SMOKE_CONFIG}: no sc_sdpo run to kill")


def run_dir_of(workdir: Path, model: str, task: str, method: str, seed: int) -> Path:
    return workdir / "results" / "runs" / model / task / method / f"seed{seed}"


# ----------------------------------------------------------------------------------------------------------------
# the kill
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class CheckpointKiller:
    """Called repeatedly while snakemake runs: once `run_dir` holds a complete checkpoint, scancel the SLURM job
    whose comment is `comment` (the plugin's `rule_<rule>_wildcards_<values>`)."""

    run_dir: Path
    comment: str
    killed_job: str | None = None
    killed_at: float = 0.0  # time.time() of the scancel
    checkpoints_at_kill: list[str] = field(default_factory=list)

    def __call__(self) -> None:
        if self.killed_job is not None:
            return
        ckpt_root = self.run_dir / "checkpoints"
        done = sorted(p.name for p in ckpt_root.glob("step_*") if (p / "trainer_state.pt").is_file()) \
            if ckpt_root.is_dir() else []
        if not done:
            return
        queue = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True).stdout
        for line in queue.splitlines():
            job_id, comment, state = line.split("|")
            if comment == self.comment and state == "RUNNING":
                self.killed_at = time.time()
                subprocess.run(["scancel", job_id], check=True)
                self.killed_job, self.checkpoints_at_kill = job_id, done
                return


# ----------------------------------------------------------------------------------------------------------------
# the two runs
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SlurmRun:
    workdir: Path
    run: Run
    profile: dict[str, Any]
    killer: CheckpointKiller
    sacct: list[dict[str, str]]


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, smoke_local_run, tmp_path_factory, request) -> SlurmRun:
    root = tmp_path_factory.mktemp("smoke_slurm")
    workdir = root / "work"
    workdir.mkdir()
    profile = write_local_profile(root / "profile")
    model, task, method, seed = killed_run_wildcards()
    killer = CheckpointKiller(run_dir_of(workdir, model, task, method, seed),
                              comment=f"rule_train_wildcards_{model}_{task}_{method}_{seed}")
    run = run_snakemake([*SLURM_SMOKE_ARGS, "--directory", str(workdir), "--workflow-profile", str(root / "profile")],
                        env=cluster_env(), log_path=root / "snakemake.log", timeout_s=DAG_TIMEOUT_S,
                        while_running=killer, progress=console(request.config, "smoke DAG, SLURM"))
    rows = sacct_jobs(workdir)
    print(f"\nSLURM smoke run: {run.seconds:.0f} s (local: {smoke_local_run[1].seconds:.0f} s); sacct:")
    print("\n".join("|".join(row.values()) for row in rows))
    return SlurmRun(workdir, run, profile, killer, rows)


# ----------------------------------------------------------------------------------------------------------------
# comparing outputs
# ----------------------------------------------------------------------------------------------------------------
def is_volatile(key: Any) -> bool:
    name = str(key).lower()
    return any(part in name for part in VOLATILE_KEY_PARTS) or name.endswith(VOLATILE_KEY_SUFFIXES)


def strip_volatile(value: Any) -> Any:
    """``value`` without dict entries whose key names a clock or machine quantity (recursively)."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if not is_volatile(k)}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def same_object(x: Any, y: Any) -> bool:
    """Deep equality for what torch.load returns: tensors/arrays element-exact, containers recursively."""
    import numpy as np
    import torch

    if torch.is_tensor(x) or torch.is_tensor(y):
        return torch.is_tensor(x) and torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.array_equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same_object(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(same_object(a, b) for a, b in zip(x, y))
    return x == y


def same_content(a: Path, b: Path, root_a: Path | None = None, root_b: Path | None = None) -> bool:
    """Whether two output files hold the same result (type-aware; clock-dependent fields ignored).

    Text outputs may name their own run's directory (e.g. lm-eval's data_path): ``root_a``/``root_b`` are
    replaced by one placeholder before comparing.
    """
    suffix = a.suffix

    def text(path: Path, root: Path | None) -> str:
        content = path.read_text()
        return content.replace(str(root), "<workdir>") if root is not None else content

    if suffix == ".json":
        docs = [strip_volatile(json.loads(text(p, r))) for p, r in ((a, root_a), (b, root_b))]
        if a.name == "recipe.json":  # a base's recipe: the sha256 of its report hashes the report's build seconds
            for doc in docs:  # (the report itself is compared without them); the weights' sha256 must match
                doc.get("files", {}).pop("base_report.json", None)
        return docs[0] == docs[1]
    if suffix == ".jsonl":
        lines = [[strip_volatile(json.loads(x)) for x in text(p, r).splitlines() if x.strip()]
                 for p, r in ((a, root_a), (b, root_b))]
        return lines[0] == lines[1]
    if suffix in (".parquet", ".csv"):
        import pandas as pd

        frames = [pd.read_parquet(p) if suffix == ".parquet" else pd.read_csv(p) for p in (a, b)]
        frames = [f[[c for c in f.columns if not is_volatile(c)]] for f in frames]
        return frames[0].equals(frames[1])
    if suffix == ".safetensors":
        import torch
        from safetensors.torch import load_file

        ta, tb = load_file(a), load_file(b)
        return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    if suffix == ".pt":  # torch.save's pickle bytes vary run to run for equal content
        import torch

        return same_object(torch.load(a, weights_only=False), torch.load(b, weights_only=False))
    if suffix in (".yaml", ".yml") and a.name == "config.yaml":  # a run's recorded trainer config
        docs = [yaml.safe_load(text(p, r)) for p, r in ((a, root_a), (b, root_b))]
        docs = [{k: v for k, v in d.items() if k not in RUN_MODE_KEYS} for d in docs]
        return docs[0] == docs[1]
    if suffix in (".yaml", ".yml", ".txt", ".md", ".tex", ".jinja"):
        return text(a, root_a) == text(b, root_b)
    return a.read_bytes() == b.read_bytes()


def output_files(workdir: Path) -> set[str]:
    """Relative paths of every file the DAG wrote under results/ and figures/ (logs excluded; an HTML report
    written by `snakemake --report` afterwards is not a DAG output). A run's TensorBoard event files are named by
    time, host and pid (one per launch): they count as one entry, ``<run>/tensorboard/<events>``."""
    found = set()
    for top in ("results", "figures"):
        for path in (workdir / top).rglob("*"):
            relative = path.relative_to(workdir).as_posix()
            if path.is_file() and not relative.startswith("results/logs/") and path.suffix != ".html":
                if path.parent.name == "tensorboard" and path.name.startswith("events.out.tfevents."):
                    relative = f"{path.parent.relative_to(workdir).as_posix()}/<events>"
                found.add(relative)
    return found


# ----------------------------------------------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------------------------------------------
def test_smoke_dag_completes_on_slurm(slurm_run: SlurmRun):
    assert slurm_run.run.returncode == 0, slurm_run.run.log[-8000:]


def test_results_match_the_local_run(slurm_run: SlurmRun, smoke_local_run):
    local_dir = smoke_local_run[0]
    local_files = {f for f in output_files(local_dir) if not f.startswith(GROUP_BENCHMARKS)}
    slurm_files = output_files(slurm_run.workdir)
    assert slurm_files == local_files, (sorted(slurm_files - local_files), sorted(local_files - slurm_files))
    compared = sorted(f for f in local_files if not f.endswith((*UNCOMPARED_SUFFIXES, "<events>"))
                      and f not in UNCOMPARED_FILES)
    different = [f for f in compared
                 if not same_content(local_dir / f, slurm_run.workdir / f, local_dir, slurm_run.workdir)]
    assert not different, f"differ between the local and the SLURM run: {different}"
    # the comparison covered what matters: data, base model, every training run's summary, metrics and weights
    for pattern in ("results/data/", "results/models/", "summary.json", "metrics.jsonl", ".safetensors"):
        assert any(pattern in f for f in compared), f"no compared output matches {pattern!r}"


def _threads_by_slurm_job(log: str) -> dict[str, int]:
    """Snakemake's log: SLURM job id -> the threads of the snakemake job it ran (1 unless the log says more)."""
    threads_of_jobid: dict[str, int] = {}
    by_slurm_job: dict[str, int] = {}
    current_jobid, current_threads = None, 1
    for line in log.splitlines():
        if re.match(r"^(local)?rule \S+:$", line):
            current_jobid, current_threads = None, 1
        elif match := re.match(r"^\s+jobid: (\d+)$", line):
            current_jobid = match.group(1)
        elif match := re.match(r"^\s+threads: (\d+)$", line):
            current_threads = int(match.group(1))
        elif line.startswith("    resources:") and current_jobid is not None:
            threads_of_jobid[current_jobid] = current_threads
        elif match := re.match(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            by_slurm_job[match.group(2)] = threads_of_jobid.get(match.group(1), 1)
    return by_slurm_job


def test_sacct_shows_every_job_completed_with_the_profile_resources(slurm_run: SlurmRun, smoke_local_run):
    rows = [r for r in slurm_run.sacct if r["JobIDRaw"] != slurm_run.killer.killed_job]
    # every job of the local run was one SLURM job, except the target rule `all` (no code; snakemake runs it) and
    # the local run's groups (group_jobs: model_task), which are a job per run on SLURM (group_jobs: none)
    local_jobs = Counter(re.findall(r"^(?:local)?rule (\S+):$", smoke_local_run[1].log, flags=re.MULTILINE))
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    runs_per_group = len(config["methods"]) * len(config["seeds"])
    expected = local_jobs - Counter(all=1)
    expected["train"] += runs_per_group * expected.pop("train_group")
    expected["evaluate"] += (runs_per_group + 1) * expected.pop("evaluate_group")  # + the base model
    assert Counter(rule_of(r["Comment"]) for r in rows) == expected
    threads = _threads_by_slurm_job(slurm_run.run.log)
    for row in rows:
        rule = rule_of(row["Comment"])
        asked = requested_resources(slurm_run.profile, rule, CLUSTER_ENV)
        context = f"{row['JobIDRaw']} {row['Comment']}: {row} vs profile {asked}"
        assert (row["State"], row["ExitCode"]) == ("COMPLETED", "0:0"), context
        assert row["Account"] == ACCOUNT == asked["slurm_account"], context
        assert row["Partition"] == asked["slurm_partition"], context
        assert parse_mem_mb(row["ReqMem"]) == asked["mem_mb"], context
        assert parse_minutes(row["Timelimit"]) == asked["runtime"], context
        assert int(row["ReqCPUS"]) == asked.get("cpus_per_task", threads[row["JobIDRaw"]]), context
        gpus = int(parse_tres(row["AllocTRES"]).get("gres/gpu", 0))
        assert gpus == asked.get("gpu", 0), context
        if gpus:
            assert parse_tres(row["AllocTRES"])[f"gres/gpu:{asked['gpu_model']}"] == str(gpus), context


def test_killed_training_job_is_retried_and_resumes_from_its_checkpoint(slurm_run: SlurmRun, smoke_local_run):
    killer = slurm_run.killer
    assert killer.killed_job is not None, "the training job was never seen running with a complete checkpoint"
    model, task, method, seed = killed_run_wildcards()
    attempts = sorted((r for r in slurm_run.sacct if r["Comment"] == killer.comment), key=lambda r: int(r["JobIDRaw"]))
    states = [(r["JobIDRaw"], r["State"].split()[0]) for r in attempts]
    assert states[0] == (killer.killed_job, "CANCELLED"), (
        f"{states}: the kill came too late (the job had finished), or hit the wrong job")
    assert [s for _, s in states[1:]] == ["COMPLETED"], states
    assert wildcards_of(killer.comment) == f"{model}_{task}_{method}_{seed}"
    # the retry resumed from the checkpoint the killed attempt had completed: it says so, and it did not write
    # that checkpoint again (a retry from step 0 would have)
    run_dir = run_dir_of(slurm_run.workdir, model, task, method, seed)
    log = (slurm_run.workdir / "results" / "logs" / "train" / model / task / method / f"seed{seed}.log").read_text()
    assert "resume=True" in log, log[-3000:]
    kept = [run_dir / "checkpoints" / name / "trainer_state.pt" for name in killer.checkpoints_at_kill]
    kept = [path for path in kept if path.exists()]
    assert kept, f"none of {killer.checkpoints_at_kill} is left to check (rotated away by keep_last?)"
    assert all(path.stat().st_mtime < killer.killed_at for path in kept), "a checkpoint was rewritten after the kill"
    # and ended exactly where the uninterrupted local run ended: same steps logged once each, same metrics
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert steps == sorted(set(steps)), steps
    local_summary = run_dir_of(smoke_local_run[0], model, task, method, seed) / "summary.json"
    assert same_content(local_summary, run_dir / "summary.json")


def test_nothing_half_written_and_nothing_left_to_do(slurm_run: SlurmRun):
    leftovers = [p.relative_to(slurm_run.workdir).as_posix() for top in ("results", "figures")
                 for p in (slurm_run.workdir / top).rglob("*")
                 if p.name.startswith(".tmp") or p.name.endswith(".tmp") or ".stale-" in p.name]
    assert not leftovers, leftovers
    dry = subprocess.run(
        [*SNAKEMAKE, *SLURM_SMOKE_ARGS, "--directory", str(slurm_run.workdir),
         "--workflow-profile", str(slurm_run.workdir.parent / "profile"), "-n"],
        cwd=REPO, env=cluster_env(), capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


def test_the_comparison_ignores_what_differs_by_clock_machine_or_launch(tmp_path):
    """Without a cluster: TensorBoard event files (named by time, host and pid; a resumed run has two) count as one
    entry per run; benchmark TSVs are listed but not compared; the cost table's time and memory columns are
    ignored."""
    roots = [tmp_path / "local", tmp_path / "slurm"]
    for root, names in zip(roots, (["events.out.tfevents.1.a.1.0"], ["events.out.tfevents.2.b.7.0",
                                                                     "events.out.tfevents.3.b.9.0"]), strict=True):
        board = root / "results/runs/m/t/sdpo/seed0/tensorboard"
        board.mkdir(parents=True)
        for name in names:
            (board / name).write_bytes(name.encode())
        (root / "results/benchmarks/train").mkdir(parents=True)
        (root / "results/benchmarks/train/x.tsv").write_text(f"s\tmax_rss\n{len(names)}\t{100 * len(names)}\n")
        (root / "results/tables").mkdir(parents=True)
        (root / "results/tables/cost_table.csv").write_text(
            f"model,method,runs,wall_hours,max_rss_mb,eval_max_rss_mb,tokens_generated,median_step_s\n"
            f"m,sdpo,2,{len(names)},{700 + len(names)},{400 * len(names)},862,{len(names)}\n")
    files = [output_files(root) for root in roots]
    assert files[0] == files[1] == {"results/runs/m/t/sdpo/seed0/tensorboard/<events>",
                                    "results/benchmarks/train/x.tsv", "results/tables/cost_table.csv"}
    assert "results/benchmarks/train/x.tsv".endswith(UNCOMPARED_SUFFIXES)
    assert same_content(*(root / "results/tables/cost_table.csv" for root in roots))
    # a base's recipe.json: the build's seconds, and the sha256 of the report that records them, are the clock's;
    # the weights' sha256 is not
    recipes = [root / "results/models/m/base/recipe.json" for root in roots]
    for path, seconds in zip(recipes, (10.0, 12.5), strict=True):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"settings": {"seed": 0}, "made": {"commit": "abc", "seconds": seconds},
                                    "files": {"base_report.json": f"sha-{seconds}", "model.safetensors": "w"}}))
    assert same_content(*recipes)
    recipes[1].write_text(recipes[1].read_text().replace('"model.safetensors": "w"', '"model.safetensors": "v"'))
    assert not same_content(*recipes)
