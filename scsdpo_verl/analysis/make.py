"""Entry points for the workflow's ``tables`` and ``figures`` rules: a workflow config and results dir in,
files out. The rule scripts only unpack the ``snakemake`` object and call these."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from scsdpo_verl.analysis.figures import FIGURES, make_all_figures
from scsdpo_verl.analysis.runs import eval_frame, question_frame, run_index_from_workflow, training_frame
from scsdpo_verl.analysis.tables import build_ablation_table, build_cost_table, build_main_table

TABLES = ("main_table", "ablation_table", "cost_table")
CAPTION_DIR = Path(__file__).parent / "report"


def samples_per_question(evals) -> int:
    """The k of mean@k/maj@k (lm-eval repeats) shared by all evaluations."""
    ks = sorted({int(k) for k in evals["k"].dropna()})
    if len(ks) != 1:
        raise ValueError(f"evaluations used different numbers of samples per question: {ks}")
    return ks[0]


def make_tables(config: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path, *,
                maj: str = "bootstrap") -> dict[str, Path]:
    """Write main_table, ablation_table and cost_table (.csv, .md, .tex) into ``out_dir``; returns CSV paths."""
    index = run_index_from_workflow(config, results_dir)
    evals = eval_frame(index)
    k = samples_per_question(evals)
    out_dir = Path(out_dir)
    build_main_table(evals, out_dir / "main_table", k=k, maj=maj)
    build_ablation_table(evals, out_dir / "ablation_table", k=k, maj=maj)
    build_cost_table(index, training_frame(index), out_dir / "cost_table")
    return {name: out_dir / f"{name}.csv" for name in TABLES}


def make_figures(config: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write the 8 figures (.png, .pdf) into ``out_dir``; returns the PNG paths."""
    index = run_index_from_workflow(config, results_dir)
    written = make_all_figures(training_frame(index), eval_frame(index), question_frame(index), out_dir)
    plt.close("all")
    return written


def caption_path(name: str) -> Path:
    """The report caption (.rst) of a table or figure, e.g. ``caption_path("fig1_learnability")``."""
    if name not in (*TABLES, *FIGURES):
        raise ValueError(f"no caption for {name!r}")
    return CAPTION_DIR / f"{name}.rst"
