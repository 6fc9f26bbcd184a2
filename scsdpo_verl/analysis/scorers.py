"""How much the tool-use scorer matters: the strict parser and the SDPO reference's one side by side.

Per tool-use task of the config (``tooluse_scorers.csv``/``.md``/``.tex``):

- from the task data (``results/data/<task>/counts.json``, written by ``pipeline.write_task_data``): the scorer the
  runs used, the number of test items and the number whose gold answer the two scorers score differently;
- per evaluated run (its ``samples.jsonl``: every sampled response kept): each response re-scored with both
  scorers, the number of test items where they disagree on at least one response, the number of responses they
  disagree on, and mean@k under each (the run's own scorer gave the tables' numbers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scsdpo_verl.analysis import metric_names as names

COLUMNS = ("task", "scorer", "test_items", "gold_disagreements", "model", "method", "label", "seed", "questions",
           "responses", "items_disagree", "responses_disagree", "mean_strict", "mean_reference")
TOOLUSE_KINDS = ("tooluse", "synthetic_tooluse")


def rescore_samples(path: str | Path) -> dict[str, float]:
    """Both scorers on every response of one evaluation's samples.jsonl: questions, responses, items and
    responses where they disagree, mean@k under each."""
    from scsdpo_verl.tasks.tooluse import score_tooluse, score_tooluse_reference

    questions = responses = items_disagree = responses_disagree = 0
    strict_means, reference_means = [], []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        for field in ("responses", "ground_truth"):
            if field not in record:
                raise ValueError(f"{path}, line {line_number}: field '{field}' missing")
        strict = [score_tooluse(r, record["ground_truth"])["score"] for r in record["responses"]]
        reference = [score_tooluse_reference(r, record["ground_truth"])["score"] for r in record["responses"]]
        differ = sum(a != b for a, b in zip(strict, reference, strict=True))
        questions += 1
        responses += len(strict)
        items_disagree += differ > 0
        responses_disagree += differ
        strict_means.append(sum(strict) / len(strict))
        reference_means.append(sum(reference) / len(reference))
    if not questions:
        raise ValueError(f"{path}: no evaluated questions")
    return {"questions": questions, "responses": responses, "items_disagree": items_disagree,
            "responses_disagree": responses_disagree, "mean_strict": sum(strict_means) / questions,
            "mean_reference": sum(reference_means) / questions}


def scorer_frame(config: Mapping[str, Any], index: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """One row per (tool-use task, evaluated run), COLUMNS; a task without evaluations keeps one row of its data."""
    rows = []
    for task, spec in config["tasks"].items():
        if spec.get("kind") not in TOOLUSE_KINDS:
            continue
        counts_path = Path(results_dir) / "data" / task / "counts.json"
        if not counts_path.is_file():
            raise FileNotFoundError(f"{counts_path}: the task data counts of tool-use task {task} are missing")
        counts = json.loads(counts_path.read_text())
        if "gold_disagreements" not in counts:
            raise ValueError(f"{counts_path}: field 'gold_disagreements' missing (task data written before the "
                             "scorer switch: rerun the task_data rule)")
        data = {"task": task, "scorer": counts.get("scorer", "strict"), "test_items": counts["test"],
                "gold_disagreements": counts["gold_disagreements"]["test"]}
        runs = index[(index["task"] == task) & index["eval_dir"].notna()]
        for _, run in runs.iterrows():
            rescored = rescore_samples(Path(run["eval_dir"]) / names.EVAL_SAMPLES_FILE)
            rows.append({**data, "model": run["model"], "method": run["method"], "label": run["label"],
                         "seed": int(run["seed"]), **rescored})
        if runs.empty:
            rows.append(data)
    return pd.DataFrame(rows, columns=COLUMNS)


def build_scorer_table(config: Mapping[str, Any], index: pd.DataFrame, results_dir: str | Path,
                       out_prefix: str | Path) -> pd.DataFrame:
    """Write tooluse_scorers.csv/.md/.tex (see the module docstring); returns the frame."""
    from scsdpo_verl.analysis.tables import to_latex, to_markdown

    frame = scorer_frame(config, index, results_dir)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_prefix.with_suffix(".csv"), index=False)
    evaluated = frame.dropna(subset=["questions"])
    shown = pd.DataFrame({
        "task": evaluated["task"], "model": evaluated["model"], "method": evaluated["label"],
        "seed": evaluated["seed"].astype("Int64").astype(str),
        "items where they differ": [f"{int(d)} / {int(q)}" for d, q in
                                    zip(evaluated["items_disagree"], evaluated["questions"], strict=True)],
        "responses where they differ": [f"{int(d)} / {int(r)}" for d, r in
                                        zip(evaluated["responses_disagree"], evaluated["responses"], strict=True)],
        "mean@k strict": evaluated["mean_strict"].map(lambda v: f"{100 * v:.1f}"),
        "mean@k reference": evaluated["mean_reference"].map(lambda v: f"{100 * v:.1f}"),
    })
    notes = [f"{row['task']}: scored with '{row['scorer']}'; the strict and the reference scorer disagree on the "
             f"gold answer of {int(row['gold_disagreements'])} of its {int(row['test_items'])} test items."
             for _, row in frame.drop_duplicates("task").iterrows()]
    notes.append("Per evaluated run: every sampled response re-scored with both scorers (mean@k in %); the tables "
                 "use the task's own scorer.")
    if frame.empty:
        notes = ["This config has no tool-use task."]
    footer = "".join(f"\n{note}\n" for note in notes)
    title = "**Tool-use scorers: strict vs the SDPO reference's parser**\n\n"
    out_prefix.with_suffix(".md").write_text(title + to_markdown(shown) + footer)
    out_prefix.with_suffix(".tex").write_text(to_latex(shown, caption=" ".join(["Tool-use scorers.", *notes])))
    return frame
