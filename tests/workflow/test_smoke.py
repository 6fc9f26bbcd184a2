"""The smoke config end to end in a temporary directory: data -> base model -> 7 training runs -> lm-eval ->
tables, the 8 figures and the HTML report; then the rerun behaviour users rely on."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scsdpo_verl.pipeline import FIGURE_NAMES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _snakemake(workdir, *args, configfile=REPO / "config/smoke.yaml", check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(workdir), "--configfile", str(configfile)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_run(smoke_local_run):
    """The smoke DAG, run once per session (tests/conftest.py) and shared with the SLURM comparison."""
    workdir, _ = smoke_local_run
    return workdir


def test_all_tables_figures_and_report(smoke_run):
    tables = smoke_run / "results" / "tables"
    for name in ("main_table", "ablation_table", "cost_table"):
        for ext in ("csv", "md", "tex"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    for name in FIGURE_NAMES:
        assert (smoke_run / "figures" / f"{name}.png").stat().st_size > 1000
        assert (smoke_run / "figures" / f"{name}.pdf").stat().st_size > 1000
    main = pd.read_csv(tables / "main_table.csv")
    assert {"base", "grpo", "sdpo", "sc_sdpo"} <= set(main["method"])
    # the report goes outside results/ so the shared run's outputs stay comparable with the SLURM run's
    report = smoke_run.parent / f"{smoke_run.name}-report.html"
    _snakemake(smoke_run, "--report", str(report))
    html = report.read_text(errors="replace")
    assert "fig1_learnability" in html and "main_table" in html
    assert "Docutils System Messages" not in html


def test_console_shows_progress_not_empty_shell_commands(smoke_local_run):
    _, run = smoke_local_run
    assert "Shell command" not in run.log  # script rules have none: printing "None" per job was noise
    assert "22 of 22 steps (100%) done" in run.log and "log: results/logs/train/" in run.log


def test_run_dirs_are_self_describing(smoke_run):
    run = smoke_run / "results" / "runs" / "qwen3-tiny" / "synthetic_science" / "sc_sdpo" / "seed0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"] == "sc_sdpo" and config["exponent"] == 0.5 and config["train_path"].endswith(".parquet")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(0, config["total_steps"] + 1))
    assert (run / "final" / "config.json").is_file()
    results = json.loads(
        (smoke_run / "results/eval/qwen3-tiny/synthetic_science/sc_sdpo/seed0/results.json").read_text()
    )
    assert results  # lm-eval ran on the final checkpoint


def test_rerun_is_a_no_op_and_a_changed_config_reruns_training(smoke_run, tmp_path):
    proc = _snakemake(smoke_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    changed = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    changed["train"]["lr"] = 2.0e-4
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    out = _snakemake(smoke_run, "-n", configfile=path).stdout
    counts = dict(
        (line.split()[0], int(line.split()[1])) for line in out[out.index("Job stats"):].splitlines()[3:]
        if len(line.split()) == 2 and line.split()[1].isdigit()
    )
    assert counts["train"] == 7  # every run's effective config changed: none is silently reused
    assert "params" in out.lower()
