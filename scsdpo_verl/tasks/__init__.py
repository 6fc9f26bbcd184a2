"""Tasks: loaders, scorers, synthetic twins and verl parquet rows.

- ``compute_score(data_source, solution_str, ground_truth, extra_info=None)``: verl's custom reward function;
  returns ``{"score": float, "acc": bool, "pred": str, "feedback": str}``. The synthetic twins use the same
  scorer as their real task.
- ``load_task_rows(task, path=None, *, split="train", format=None, **kw)``: one entry point for every task.
- ``synthetic.generate(task, n, seed, split=...)``, ``schema.write_parquet`` / ``schema.read_parquet``.

This package imports nothing from the training backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scsdpo_verl.tasks import schema, synthetic
from scsdpo_verl.tasks.schema import TaskDataError, read_parquet, write_parquet
from scsdpo_verl.tasks.science import load_science, score_mcq
from scsdpo_verl.tasks.tooluse import SCORERS, load_tooluse, score_tooluse, score_tooluse_with

__all__ = [
    "REAL_TASKS",
    "SCORERS",
    "SYNTHETIC_TASKS",
    "TASKS",
    "TaskDataError",
    "compute_score",
    "load_task_rows",
    "read_parquet",
    "schema",
    "scorer_for",
    "synthetic",
    "write_parquet",
]

REAL_TASKS = ("science", "tooluse")
SYNTHETIC_TASKS = synthetic.TASKS
TASKS = REAL_TASKS + SYNTHETIC_TASKS

_SCIENCE_SOURCES = ("sciknoweval", "science", "synthetic_science")
_TOOLUSE_SOURCES = ("tooluse", "toolalpaca", "synthetic_tooluse")


def scorer_for(data_source: str):
    """The scorer ``(solution_str, ground_truth) -> dict`` for a row's ``data_source``.

    Science: ``sciknoweval``, ``sciknoweval/<domain>``, ``science``, ``synthetic_science``.
    Tool use: ``tooluse``, ``toolalpaca``, ``synthetic_tooluse``.
    """
    family = data_source.split("/", 1)[0]
    if family in _SCIENCE_SOURCES:
        return score_mcq
    if family in _TOOLUSE_SOURCES:
        return score_tooluse
    raise ValueError(f"no scorer for data_source {data_source!r}; known: {_SCIENCE_SOURCES + _TOOLUSE_SOURCES}")


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: Any
) -> dict[str, Any]:
    """verl reward function: ``{"score": 0.0|1.0, "acc": bool, "pred": str, "feedback": str}``.

    ``pred`` alone determines the score (so equal preds vote together in maj@k); ``feedback`` is "" when the
    answer is right. Extra keyword arguments that some verl reward managers pass are ignored.
    ``extra_info["scorer"]`` (tool use only; written into the rows by the workflow's task data rule, so every
    backend and the evaluation read it) picks the tool-use scorer: ``"strict"`` (default) or ``"reference"``.
    """
    scorer = (extra_info or {}).get("scorer") or "strict"
    score = scorer_for(data_source)
    if score is score_tooluse:
        return score_tooluse_with(scorer)(solution_str, ground_truth)
    if scorer != "strict":
        raise ValueError(f"data_source {data_source!r}: extra_info.scorer {scorer!r} applies to tool use only")
    return score(solution_str, ground_truth)


def load_task_rows(
    task: str,
    path: str | Path | None = None,
    *,
    split: str = "train",
    format: str | None = None,
    report: list | None = None,
    **kw: Any,
) -> list[dict[str, Any]]:
    """RL rows of ``task`` for ``split``.

    - ``"science"``: ``path`` is a SciKnowEval file (HF schema; filtered and split 90/10 per domain, seed 42),
      an SDPO reference split file, or a folder/clone in the SDPO layout; None loads the hub dataset.
      ``format`` in {"sciknoweval", "sdpo"} (auto-detected when None); ``kw``: ``domains``, ``seed``,
      ``test_fraction``, ``system_prompt``, ``check_counts`` (compare with the reference's pinned counts).
    - ``"tooluse"``: ``path`` is a ToolAlpaca JSON file or an SDPO reference file/folder/clone;
      ``format`` in {"toolalpaca", "sdpo"}; ``kw``: ``check_counts``.
    - ``"synthetic_science"`` / ``"synthetic_tooluse"``: no ``path``; ``kw``: ``n`` (default 1000), ``seed``
      (default 0), ``levels``.

    The loaders log their filter reports (read / kept / dropped by reason) at INFO level; pass a list as
    ``report`` to also receive them as dicts.
    """
    if task in SYNTHETIC_TASKS:
        if path is not None or format is not None:
            raise ValueError(f"{task} is generated; it takes no path or format (got {path!r}, {format!r})")
        return synthetic.generate(task, kw.pop("n", 1000), kw.pop("seed", 0), split=split, **kw)
    if task == "science":
        rows, reports = load_science(path, split=split, format=format, **kw)
    elif task == "tooluse":
        if path is None:
            raise ValueError("tooluse needs a path: a ToolAlpaca JSON file or an SDPO reference file/folder")
        rows, reports = load_tooluse(path, split=split, format=format, **kw)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if report is not None:
        report.extend(filter_report.as_dict() for filter_report in reports)
    return rows
