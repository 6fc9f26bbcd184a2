"""`snakemake --report` on a finished workflow: every caption renders without a docutils message.

The analysis fixture's fake results (tests/analysis/conftest.py) are laid out as a workflow run; Snakemake runs
only the tables and figures rules on them (about 40 s), then builds the report. A caption with reStructuredText
trouble (e.g. ``|advantage|`` read as a substitution) shows up as a "Docutils System Messages" block in the HTML
and an ``(ERROR/3)`` line on the console: both fail the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scsdpo_verl.pipeline import FIGURE_NAMES, TABLE_NAMES
from tests.analysis.conftest import write_results

REPO = Path(__file__).resolve().parents[2]
DOCUTILS_MESSAGE = re.compile(r"\((DEBUG|INFO|WARNING|ERROR|SEVERE)/\d\)")
pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[str, str]:
    """(report HTML, console output of --report) of a workflow run on the fake results."""
    workdir = tmp_path_factory.mktemp("report")
    config = write_results(workdir / "results")
    for run in (workdir / "results" / "runs").glob("*/*/*/seed*"):
        (run / "summary.json").write_text("{}")  # the train rule's output, an input of tables and figures
    # the base_model rule's outputs (a checkpoint directory and its report), inputs of the base-model table
    base = workdir / "results" / "models" / "tiny"
    (base / "base").mkdir(parents=True)
    task_report = {"questions": 4, "k": 8, "mean_pass_rate": 0.5, "mixed_fraction": 0.5,
                   "histogram_successes_of_k": [1, 0, 0, 0, 2, 0, 0, 0, 1], "mean_pass_rate_by_difficulty": {"1": 0.5},
                   "teacher_format_mean_pass_rate": 0.75}
    (base / "base_report.json").write_text(json.dumps({"tasks": {"sci": task_report}, "precision": "fp32"}))
    # expected results with one row the run does not have: the comparison flags it
    expected = workdir / "expected"
    expected.mkdir()
    (expected / "main_table.csv").write_text("model,label,mean\nnot-a-model,GRPO,1.0\n")
    workflow_config = {"models": {"tiny": {"kind": "tiny", "name": "qwen3-tiny"}},
                       "tasks": {"sci": {"kind": "synthetic_science"}, "tool": {"kind": "synthetic_tooluse"}},
                       "methods": config["methods"], "seeds": config["seeds"], "ablation": config["ablation"],
                       "expected_results": str(expected)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(workflow_config))
    _snakemake(workdir, "--cores", "1", "--allowed-rules", "tables", "figures", "base_table", "expected_comparison")
    proc = _snakemake(workdir, "--report", str(workdir / "report.html"))
    return (workdir / "report.html").read_text(errors="replace"), proc.stdout + proc.stderr


def test_report_has_no_docutils_messages(report):
    html, console = report
    assert "Docutils System Messages" not in html and "system-message" not in html
    assert not DOCUTILS_MESSAGE.search(console), console[-3000:]


def test_report_holds_every_table_and_figure_with_its_caption(report):
    html, _ = report
    for name in (*FIGURE_NAMES, *TABLE_NAMES, "base_models", "expected_comparison"):
        assert name in html, name
    assert "teacher_format_gain" in html and "the expected results shipped with the repository" in html
    assert "the absolute advantage summed over its samples" in html  # figure 1's caption, rendered
