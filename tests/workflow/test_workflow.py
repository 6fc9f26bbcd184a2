"""The Snakemake workflow: lint, dry runs of the three configs with their job counts, config rejections.

The end-to-end smoke run is in test_smoke.py.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]



def _snakemake(args, workdir, check=True, env=None):
    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _job_counts(output: str) -> dict[str, int]:
    """Parse the dry run's 'Job stats' table into {rule: count}."""
    table = output[output.index("Job stats:"):]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def test_lint_is_clean(tmp_path):
    proc = _snakemake(["--lint"], tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("configfile", "profile", "expected"),
    [
        # 2 models x 2 tasks x 3 methods x 2 seeds + ablation 1 x 1 x 1 x 2 = 26 runs; group_jobs: model_task: per
        # model x task one job trains its 6 main-grid runs and one evaluates them and the base, the ablation's 2 runs
        # keep a job each; its expected_results key adds the comparison with docs/results/default
        ("config/default.yaml", None,
         {"task_data": 2, "base_model": 2, "train": 2, "train_group": 4, "evaluate": 2, "evaluate_group": 4,
          "tables": 1, "figures": 1, "base_table": 1, "expected_comparison": 1, "all": 1}),
        # the CPU study: 1 model x 1 task x 3 methods x 8 seeds = 24 runs; eval 24 + base 1; its expected results
        ("config/cpu_study.yaml", None,
         {"task_data": 1, "base_model": 1, "train": 24, "evaluate": 25, "tables": 1, "figures": 1, "base_table": 1,
          "expected_comparison": 1, "all": 1}),
        ("config/cpu_study_olmo3.yaml", None,  # the same with olmo3-tiny and 5 seeds
         {"task_data": 1, "base_model": 1, "train": 15, "evaluate": 16, "tables": 1, "figures": 1, "base_table": 1,
          "expected_comparison": 1, "all": 1}),
        # 1 x 2 x 3 x 1 + ablation 1 = 7 runs: 2 model x task groups (3 runs; base + 3 evaluations) + the ablation's
        ("config/smoke.yaml", None,
         {"task_data": 2, "base_model": 1, "train": 1, "train_group": 2, "evaluate": 1, "evaluate_group": 2,
          "tables": 1, "figures": 1, "base_table": 1, "all": 1}),
        # 2 x 5 x 3 x 3 + ablation 1 x 2 x 3 x 3 = 108 runs; eval 108 + base 2 x 5; hf models need no base rule
        # (nor a base table)
        ("config/paper.yaml", "workflow/profiles/slurm",
         {"reference_splits": 1, "task_data": 5, "train": 108, "evaluate": 118, "tables": 1, "figures": 1,
          "all": 1}),
    ],
)
def test_dry_run_job_counts(tmp_path, configfile, profile, expected):
    args = ["-n", "--configfile", str(REPO / configfile)]
    if profile:
        args += ["--workflow-profile", str(REPO / profile)]
    proc = _snakemake(args, tmp_path)
    counts = _job_counts(proc.stdout)
    assert {k: v for k, v in counts.items() if k != "total"} == expected
    assert counts["total"] == sum(expected.values())


def test_paper_dry_run_shows_slurm_resources(tmp_path):
    env = {**__import__("os").environ, "SCSDPO_SLURM_ACCOUNT": "acct", "SCSDPO_SLURM_PARTITION": "cpu",
           "SCSDPO_SLURM_GPU_PARTITION": "gpu"}
    proc = _snakemake(["-n", "--configfile", str(REPO / "config/paper.yaml"), "--workflow-profile",
                       str(REPO / "workflow/profiles/slurm"), "--printshellcmds"], tmp_path, env=env)
    out = proc.stdout
    assert "gpu=4" in out and "gpu_model=h100" in out and "slurm_partition=gpu" in out
    assert "reference_splits" in out
    # issue 17's outputs: the paper comparison and scorer tables, figure 9, a benchmark file for every job
    assert re.search(r"output: results/tables/main_table\.csv, .*results/tables/paper_comparison\.csv, "
                     r"results/tables/tooluse_scorers\.csv", out)
    assert "figures/fig9_paper_vs_this_run.png" in out
    jobs = _job_counts(out)["total"]
    assert out.count("    benchmark: results/benchmarks/") == jobs - 1  # every job but the target rule `all`
    assert "benchmark: results/benchmarks/train/qwen3-8b/tooluse/sc_sdpo/seed0.tsv" in out
    # verl validates before the first step and every 5 steps, and tracks as the local backend does
    command = next(line for line in out.splitlines()
                   if "qwen3-8b/tooluse/sc_sdpo/seed0" in line and "ray_slurm" in line)
    for override in ("'trainer.val_before_train=true'", "'trainer.test_freq=5'",
                     "'trainer.logger=[console,tensorboard,file]'", "'trainer.project_name=scsdpo'",
                     "'trainer.experiment_name=qwen3-8b-tooluse-sc_sdpo-seed0'"):
        assert override in command, override


def _broken(tmp_path, mutate):
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    mutate(config)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["methods"].update(ppo={"algorithm": "ppo"}), "algorithm"),
        (lambda c: c["train"].update(lr=-1.0), "lr"),
        (lambda c: c.update(seeds=[]), "seeds"),
        (lambda c: c["models"].update(gpt5={"kind": "tiny", "name": "gpt5"}), "name"),
        (lambda c: c["ablation"].update(models=["gpt5"]), "unknown model 'gpt5'"),
        (lambda c: c["train"].update(total_step=5), "total_step"),
    ],
)
def test_broken_config_fails_at_validation_naming_the_key(tmp_path, mutate, message):
    proc = _snakemake(["-n", "--configfile", str(_broken(tmp_path, mutate))], tmp_path / "work", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "invalid config:" in line]
    assert len(errors) == 1 and message in errors[0]  # one line naming the key, not the whole schema
    assert "Failed validating" not in proc.stdout + proc.stderr
    assert not (tmp_path / "work" / "results").exists()  # nothing ran


DEFAULT_COUNTS = {"task_data": 2, "base_model": 2, "train": 2, "train_group": 4, "evaluate": 2, "evaluate_group": 4,
                  "tables": 1, "figures": 1, "base_table": 1, "expected_comparison": 1, "all": 1}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # one key of the default changed: the rest of the default stays (63 jobs), the value gets its schema type
        (["train={lr: 3e-4}"], DEFAULT_COUNTS),
        (["base_model={bf16: false, warm_start_steps: 10, copy_drill_steps: 5}"], DEFAULT_COUNTS),
        (["base_model={number_tokens: true}"], DEFAULT_COUNTS),
        # no expected results: their comparison table leaves the DAG
        (["expected_results=null"], {k: v for k, v in DEFAULT_COUNTS.items() if k != "expected_comparison"}),
        # a list override: 3 seeds -> 39 runs; the 4 groups take 3 seeds each, the ablation 3 jobs
        (["seeds=[0, 1, 2]"], {**DEFAULT_COUNTS, "train": 3, "evaluate": 3}),
        # one job per run: 26 trainings, 26 + the 4 base evaluations, no group
        (["group_jobs=none"],
         {**{k: v for k, v in DEFAULT_COUNTS.items() if not k.endswith("_group")}, "train": 26, "evaluate": 30}),
        # an ablation variant under a free key (a second main-grid sc_sdpo is refused: see below)
        (["ablation={methods: {half_max: {algorithm: sc_sdpo, normalize: batch_max}}}"],
         {**DEFAULT_COUNTS, "train": 4, "evaluate": 4}),
    ],
)
def test_config_overrides_merge_with_the_default(tmp_path, overrides, expected):
    proc = _snakemake(["-n", "--config", *overrides], tmp_path)
    counts = _job_counts(proc.stdout)
    assert {k: v for k, v in counts.items() if k != "total"} == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train={total_steps: 0}", "train.total_steps: 0 is less than the minimum of 1"),
        ("base_model={bf16: perhaps}", "base_model.bf16: 'perhaps' is not one of ['auto', True, False]"),
        ("methods={scsdpo: {algorithm: sc_sdpo}}", "methods: scsdpo, sc_sdpo all have algorithm 'sc_sdpo'"),
        ("reporting={budgets: {unit: days, values: [1]}}", "reporting.budgets.unit: 'days' is not one of"),
        ("reporting={published: {models: {qwen3-tiny: GPT-5}}}",
         "reporting.published.models.qwen3-tiny: 'GPT-5' is not in"),
        ("tasks={synthetic_science: {kind: synthetic_science, scorer: reference}}",
         "tasks.synthetic_science.scorer: applies to tool-use tasks only"),
        ("evaluation={backend: vllm}", "group_jobs: model_task needs evaluation.backend hf"),
        ("group_jobs=per_run", "group_jobs: 'per_run' is not one of ['none', 'model_task']"),
        ("base_model={shipped_dir: no/such/dir}", "base_model.shipped_dir: "),
    ],
)
def test_bad_overrides_fail_naming_the_key(tmp_path, override, message):
    proc = _snakemake(["-n", "--config", override], tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_the_default_takes_its_bases_from_bases_unless_told_to_build(tmp_path):
    # the shipped base's recipe is an input of the base_model job (a newer shipped base reruns it); null: built
    shipped_run = _snakemake(["-n", "results/models/qwen3-tiny/base"], tmp_path)
    shipped = shipped_run.stdout + shipped_run.stderr
    assert str(REPO / "bases" / "qwen3-tiny" / "recipe.json") in shipped
    built = _snakemake(["-n", "results/models/qwen3-tiny/base", "--config", "base_model={shipped_dir: null}"],
                       tmp_path).stdout
    assert "recipe.json" not in built and "rule base_model" in built
    # a config whose recipe is not the shipped one builds its base, and says so on the console before any job
    assert "WARNING qwen3-tiny" not in shipped
    other = _snakemake(["-n", "results/models/qwen3-tiny/base", "--config", "base_model={warm_start_lr: 0.005}"],
                       tmp_path)
    assert "WARNING qwen3-tiny: the shipped base" in other.stderr
    assert "base_model.warm_start_lr: 0.005 here, 0.0025 shipped" in other.stderr
    assert str(REPO / "bases" / "qwen3-tiny" / "recipe.json") in other.stdout  # still an input: a rebuild reruns it


def _job_priorities(output: str) -> dict[tuple[str, str, int], int]:
    """{(rule, method, seed): priority} of the train and evaluate jobs of a dry run (no priority line: 0)."""
    priorities = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        wildcards = re.search(r"wildcards: .*method=(\w+), seed=(\d+)", block)
        if rule and rule.group(1) in ("train", "evaluate") and wildcards:
            priority = re.search(r"^\s+priority: (\d+)", block, flags=re.M)
            key = (rule.group(1), wildcards.group(1), int(wildcards.group(2)))
            priorities[key] = int(priority.group(1)) if priority else 0
    return priorities


def test_jobs_run_evaluations_first_then_training_seed_by_seed(tmp_path):
    # seeds listed out of order: the config's order decides, not the number
    proc = _snakemake(["-n", "--configfile", str(REPO / "config/cpu_study.yaml"), "--config", "seeds=[3, 0, 7]"],
                      tmp_path)
    priorities = _job_priorities(proc.stdout)
    train = {(method, seed): p for (rule, method, seed), p in priorities.items() if rule == "train"}
    evaluate = {(method, seed): p for (rule, method, seed), p in priorities.items() if rule == "evaluate"}
    assert len(train) == 9 and len(evaluate) == 10  # 3 methods x 3 seeds, + the base
    # every evaluation outranks every training job, so each run is evaluated as soon as it is trained
    assert min(evaluate.values()) > max(train.values())
    # training goes seed by seed in the config's order, all methods of a seed alike
    assert {seed: {p for (_, s), p in train.items() if s == seed} for seed in (3, 0, 7)} == {3: {3}, 0: {2}, 7: {1}}


def test_overrides_apply_on_top_of_a_configfile(tmp_path):
    proc = _snakemake(["-n", "--configfile", str(REPO / "config/smoke.yaml"), "--config", "seeds=[0, 1]"], tmp_path)
    counts = _job_counts(proc.stdout)  # the smoke grid (7 runs per seed: 2 groups of 6, 2 ablation runs)
    assert (counts["train"], counts["train_group"]) == (2, 2)
