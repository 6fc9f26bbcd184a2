"""Helpers for the SLURM tests: skip-or-fail, running snakemake with a hard stop, reading `sacct`, merging profiles.

Pure functions (parsers, the profile merge, the expected resources of a rule) are tested in test_slurm_tools.py on
any machine; the rest needs the cluster that cluster.sh starts.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = Path(__file__).resolve().parent / "cluster.sh"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
LOCAL_OVERRIDES = Path(__file__).resolve().parent / "profile_overrides.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SMOKE_CONFIG = REPO / "config" / "smoke.yaml"
SMOKE_ARGS = ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(SMOKE_CONFIG)]
# on SLURM one job per training run and evaluation (group_jobs: none), where the local smoke run groups them per
# model x task: the comparison of the two runs' outputs then also shows that grouping changes no number
SLURM_SMOKE_ARGS = [*SMOKE_ARGS, "--config", "group_jobs=none"]
# the group jobs' own benchmark files exist in the grouped (local) run only
GROUP_BENCHMARKS = ("results/benchmarks/train_group/", "results/benchmarks/evaluate_group/")
DAG_TIMEOUT_S = 1200  # one smoke DAG: ~9 min locally on the loaded 2-core dev machine

# what cluster.sh creates
ACCOUNT = "ci"
PARTITION = "cpu"
GPU_PARTITION = "gpu"
CLUSTER_ENV = {
    "SCSDPO_SLURM_ACCOUNT": ACCOUNT,
    "SCSDPO_SLURM_PARTITION": PARTITION,
    "SCSDPO_SLURM_GPU_PARTITION": GPU_PARTITION,
}

SACCT_FIELDS = ("JobIDRaw", "JobName", "Comment", "Partition", "Account", "State", "ExitCode", "ReqCPUS", "ReqMem",
                "Timelimit", "ReqTRES", "AllocTRES", "Elapsed", "WorkDir")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; in CI (CI=true) the SLURM tests are mandatory, so fail with the same reason."""
    if in_ci():
        pytest.fail(f"{reason} -- and CI=true, where the SLURM tests must run", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------------------------------------------
# running snakemake
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    returncode: int
    log: str  # stdout + stderr
    seconds: float


Progress = Callable[[str], None]
PROGRESS_LINE = re.compile(r"^\d+ of \d+ steps \(\d+%\) done$")  # snakemake's line after each finished job


def console(config: pytest.Config, label: str) -> Progress:
    """A function that prints ``[label] text`` on the terminal while pytest captures the tests' output.

    The SLURM and smoke runs take minutes each; without this, ``pytest -q`` stays silent for over 10 minutes.
    """
    capture = config.pluginmanager.getplugin("capturemanager")
    terminal = config.pluginmanager.getplugin("terminalreporter")

    def report(text: str) -> None:
        if terminal is None:  # e.g. pytest -p no:terminal
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            terminal.write_line(f"[{label}] {text}")

    return report


def run_snakemake(args: list[str], *, log_path: Path, timeout_s: float, env: Mapping[str, str] | None = None,
                  cwd: Path = REPO, while_running: Callable[[], None] | None = None,
                  progress: Progress | None = None) -> Run:
    """Run ``python -m snakemake ARGS`` with output to ``log_path``; stop it with SIGINT after ``timeout_s``.

    ``while_running`` is called about every 0.1 s until snakemake exits (to act on the cluster mid-run).
    SIGINT, not SIGTERM: the slurm executor ignores SIGTERM while jobs are active and then waits for them forever
    if its status command fails; on SIGINT it cancels its jobs and exits.
    ``progress`` receives the start (with the log's path), snakemake's "N of M steps done" lines and the end.
    """
    start = time.monotonic()
    timed_out = False
    if progress is not None:
        progress(f"snakemake started, log: {log_path}")
    with open(log_path, "w") as log, open(log_path) as follow:
        proc = subprocess.Popen([*SNAKEMAKE, *args], cwd=cwd, env=None if env is None else dict(env),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        pending = ""
        try:
            while proc.poll() is None:
                if time.monotonic() - start > timeout_s:
                    timed_out = True
                    proc.send_signal(signal.SIGINT)
                    proc.wait(timeout=60)
                    break
                if while_running is not None:
                    while_running()
                if progress is not None:  # forward complete new lines that report progress
                    pending += follow.read()
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        if PROGRESS_LINE.match(line.strip()):
                            progress(f"{line.strip()} ({time.monotonic() - start:.0f} s)")
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    if timed_out:
        text += f"\n[test] snakemake stopped with SIGINT after {timeout_s:.0f} s\n"
    seconds = time.monotonic() - start
    if progress is not None:
        progress(f"snakemake {'timed out' if timed_out else f'exited with {proc.returncode}'} after {seconds:.0f} s")
    return Run(-1 if timed_out else proc.returncode, text, seconds)


def cluster_env(**extra: str) -> dict[str, str]:
    """The test process's environment plus the account/partition variables the SLURM profile reads."""
    return {**os.environ, **CLUSTER_ENV, **extra}


# ----------------------------------------------------------------------------------------------------------------
# sacct
# ----------------------------------------------------------------------------------------------------------------
def parse_sacct(text: str, fields: tuple[str, ...] = SACCT_FIELDS) -> list[dict[str, str]]:
    """``sacct --parsable2 --noheader`` lines (``|``-separated, in ``fields`` order) -> one dict per line."""
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise ValueError(f"sacct line {line_number}: {len(values)} fields, expected {len(fields)}: {line!r}")
        rows.append(dict(zip(fields, values)))
    return rows


def sacct_jobs(workdir: Path, *, timeout_s: float = 60) -> list[dict[str, str]]:
    """All job allocations (``-X``) whose working directory is ``workdir``, once every one has a final state.

    slurmctld reports to slurmdbd asynchronously, so a finished job can still read RUNNING for a moment.
    """
    command = ["sacct", "-X", "--parsable2", "--noheader", "--starttime", "2000-01-01",
               "--format", ",".join(SACCT_FIELDS)]
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows = [r for r in parse_sacct(out) if Path(r["WorkDir"]) == Path(workdir)]
        if all(r["State"].split()[0] in FINAL_STATES for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def rule_of(comment: str) -> str:
    """The rule name in the executor plugin's job comment: ``rule_<rule>`` or ``rule_<rule>_wildcards_<values>``."""
    if not comment.startswith("rule_"):
        raise ValueError(f"not a snakemake job comment: {comment!r}")
    return comment[len("rule_"):].split("_wildcards_")[0]


def wildcards_of(comment: str) -> str:
    """The wildcard part of a job comment ('' for a rule without wildcards)."""
    return comment.split("_wildcards_", 1)[1] if "_wildcards_" in comment else ""


def parse_mem_mb(value: str) -> int:
    """sacct ReqMem ('2000M', '2G', '1.50G', 'n' suffix per node in old versions) -> MB."""
    value = value.rstrip("nc")
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    if value and value[-1] in units:
        return round(float(value[:-1]) * units[value[-1]])
    return round(float(value))


def parse_minutes(value: str) -> int:
    """sacct Timelimit ('[D-]HH:MM:SS' or 'MM:SS') -> whole minutes."""
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def parse_tres(value: str) -> dict[str, str]:
    """'billing=1,cpu=1,gres/gpu=1,mem=100M,node=1' -> {'billing': '1', 'cpu': '1', 'gres/gpu': '1', ...}."""
    return dict(item.split("=", 1) for item in value.split(",") if item)


# ----------------------------------------------------------------------------------------------------------------
# profiles
# ----------------------------------------------------------------------------------------------------------------
RESOURCE_TABLES = ("default-resources", "set-resources", "set-threads")


def merge_profile(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied: resource tables merge key by key (per rule for set-resources), every
    other key is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if key == "set-resources":
            table = merged.setdefault(key, {})
            for rule, resources in value.items():
                table[rule] = {**table.get(rule, {}), **resources}
        elif key in RESOURCE_TABLES:
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_local_profile(directory: Path) -> dict[str, Any]:
    """Write the real SLURM profile with this cluster's overrides to ``directory/config.yaml``; return it."""
    base = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    profile = merge_profile(base, yaml.safe_load(LOCAL_OVERRIDES.read_text()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """A profile value as snakemake sees it: ``$VAR`` in strings replaced from ``env``."""
    if not isinstance(value, str):
        return value
    for name, replacement in env.items():
        value = value.replace(f"${{{name}}}", replacement).replace(f"${name}", replacement)
    return value


def requested_resources(profile: Mapping[str, Any], rule: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The resources ``profile`` asks for ``rule``: default-resources updated by set-resources[rule]."""
    resources = {**profile.get("default-resources", {}), **profile.get("set-resources", {}).get(rule, {})}
    return {key: expand_env(value, env) for key, value in resources.items()}
