"""Entry points for the workflow's ``tables`` and ``figures`` rules: a workflow config and results dir in,
files out. The rule scripts only unpack the ``snakemake`` object and call these."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from scsdpo_verl.analysis.budgets import best_within_budgets, budgets_from_config
from scsdpo_verl.analysis.figures import FIGURES, make_all_figures
from scsdpo_verl.analysis.published import published_from_config, published_path
from scsdpo_verl.analysis.runs import (
    eval_frame,
    question_frame,
    run_index_from_workflow,
    teacher_signals,
    training_frame,
)
from scsdpo_verl.analysis.scorers import build_scorer_table
from scsdpo_verl.analysis.tables import (
    build_ablation_table,
    build_cost_table,
    build_gain_table,
    build_main_table,
    build_paper_comparison,
    gain_table_markdown,
    main_table_comparison,
)

TABLES = ("main_table", "gains", "ablation_table", "cost_table", "paper_comparison", "tooluse_scorers")
CAPTION_DIR = Path(__file__).parent / "report"
REPO_DIR = Path(__file__).resolve().parents[2]  # where a relative reporting.published.file is looked up by default


def samples_per_question(evals) -> int:
    """The k of mean@k/maj@k (lm-eval repeats) shared by all evaluations."""
    ks = sorted({int(k) for k in evals["k"].dropna()})
    if len(ks) != 1:
        raise ValueError(f"evaluations used different numbers of samples per question: {ks}")
    return ks[0]


def analysis_inputs(config: Mapping[str, Any], results_dir: str | Path, published_file: str | Path | None = None):
    """(run index, training frame, eval frame, budgets frame, (published numbers, the config's names for them), k).
    ``published_file``: the published numbers (default: the config's, relative to this repository)."""
    index = run_index_from_workflow(config, results_dir)
    training, evals = training_frame(index), eval_frame(index)
    budgets = best_within_budgets(training, budgets_from_config(config))
    published = published_from_config(config, published_file or published_path(config, REPO_DIR))
    return index, training, evals, budgets, published, samples_per_question(evals)


def make_tables(config: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path, *,
                maj: str = "bootstrap", published_file: str | Path | None = None) -> dict[str, Path]:
    """Write the tables (.csv, .md, .tex) into ``out_dir``; returns CSV paths (see analysis_inputs)."""
    index, training, evals, budgets, published, k = analysis_inputs(config, results_dir, published_file)
    out_dir = Path(out_dir)
    main = build_main_table(evals, out_dir / "main_table", k=k, maj=maj, budgets=budgets, published=published,
                            teacher_signals=teacher_signals(index))
    build_gain_table(evals, out_dir / "gains", k=k, maj=maj)
    build_ablation_table(evals, out_dir / "ablation_table", k=k, maj=maj, budgets=budgets)
    build_cost_table(index, training, out_dir / "cost_table")
    build_paper_comparison(main_table_comparison(main, evals, published, k=k, maj=maj), published[0],
                           out_dir / "paper_comparison")
    build_scorer_table(config, index, results_dir, out_dir / "tooluse_scorers")
    return {name: out_dir / f"{name}.csv" for name in TABLES}


def make_figures(config: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path, *,
                 published_file: str | Path | None = None) -> dict[str, Path]:
    """Write the 9 figures (.png, .pdf) into ``out_dir``; returns the PNG paths (see analysis_inputs)."""
    index, training, evals, budgets, published, k = analysis_inputs(config, results_dir, published_file)
    comparison = main_table_comparison(build_main_table(evals, k=k, budgets=budgets), evals, published, k=k)
    written = make_all_figures(training, evals, question_frame(index), out_dir, comparison)
    plt.close("all")
    return written


def gains_so_far(config: Mapping[str, Any], results_dir: str | Path, *, maj: str = "bootstrap") -> str:
    """The gain table (gains.md's rows) over the evaluations a run has finished so far, headed by how far it is:

        <trained> of <runs> runs trained, <evaluated> of <runs> evaluated, base evaluated on <b> of <m x t>

    For a long run (the CPU study) before its ``tables`` job: each Method − Base and the paired SC-SDPO − SDPO use
    the seeds evaluated so far, so n grows as the run goes; the numbers are those the final table will have for
    those seeds. Reads only what exists; a run in progress is counted as not trained."""
    index = run_index_from_workflow(config, results_dir)
    runs = index[index["method"] != "base"]
    trained = sum(isinstance(d, str) and (Path(d) / "summary.json").is_file() for d in runs["run_dir"])
    evaluated = sum(isinstance(d, str) for d in runs["eval_dir"])
    base = int((index["method"] == "base").sum())
    head = (f"{trained} of {len(runs)} runs trained, {evaluated} of {len(runs)} evaluated, base evaluated on {base} "
            f"of {len(config['models']) * len(config['tasks'])} model x task")
    evals = eval_frame(index)
    if evals.empty:
        return head + "\nno evaluation yet\n"
    k = samples_per_question(evals)
    table = build_gain_table(evals, k=k, maj=maj)
    if table.empty:
        return head + "\nno difference yet (a method needs the base or its pair evaluated)\n"
    return f"{head}\n\n{gain_table_markdown(table, k=k, maj=maj)}"


def caption_path(name: str) -> Path:
    """The report caption (.rst) of a table or figure, e.g. ``caption_path("fig1_learnability")``."""
    if name not in (*TABLES, *FIGURES):
        raise ValueError(f"no caption for {name!r}")
    return CAPTION_DIR / f"{name}.rst"
