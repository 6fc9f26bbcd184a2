"""The functions the packaged lm-eval task YAMLs (``scsdpo_verl/eval/tasks/*.yaml``) point at.

A doc is one verl RL row flattened for lm-eval::

    {"question_id", "data_source", "system", "user", "ground_truth", "difficulty", "index", "scorer"}

``system`` becomes the task ``description`` (lm-eval puts it in the system message when the chat template is
applied) and ``user`` is ``doc_to_text``; rows must be ``[system?, user]`` conversations.

Each request is sampled ``repeats`` = k times; lm-eval hands the k responses of a doc to every filter pipeline.
Our filters score the responses with the training scorer (``scsdpo_verl.tasks.compute_score``) and reduce them
to one per-question accuracy (see ``scsdpo_verl.eval.majority``)::

    filter "mean@k"            -> mean@k
    filter "maj@k"             -> exact majority vote on pred
    filter "maj@k_bootstrap"   -> verl's bootstrap majority (1000 resamples of k, seed 42)

and ``process_results`` reports that number as ``acc``, so lm-eval prints ``acc,mean@16``, ``acc,maj@16`` and
``acc,maj@16_bootstrap``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scsdpo_verl.eval.majority import bootstrap_majority_accuracy, exact_majority_accuracy, mean_accuracy

DOC_FIELDS = ("question_id", "data_source", "system", "user", "ground_truth", "difficulty", "index", "scorer")


# --------------------------------------------------------------------------------------------------- data


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """verl RL rows from a ``.parquet`` file or a ``.jsonl``/``.json`` file of one row per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: evaluation data file not found")
    if path.suffix == ".parquet":
        from scsdpo_verl.tasks.schema import read_parquet

        return read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for line_number, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {line_number + 1}: not valid JSON ({err.msg})") from None
        return rows
    raise ValueError(f"{path}: unsupported data file type {path.suffix!r} (use .parquet or .jsonl)")


def row_to_doc(row: dict[str, Any], *, source: str | Path, row_number: int) -> dict[str, Any]:
    """Flatten one RL row into an lm-eval doc (see the module docstring); errors name file, row and field."""
    from scsdpo_verl.tasks.schema import data_error, validate_row

    validate_row(row, source=source, row_number=row_number)
    messages = row["prompt"]
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise data_error(source, row_number, "prompt", f"expected [system?, user] messages, got roles {roles}")
    extra = row["extra_info"]
    return {
        "question_id": extra["question_id"],
        "data_source": row["data_source"],
        "system": messages[0]["content"] if roles[0] == "system" else "",
        "user": messages[-1]["content"],
        "ground_truth": row["reward_model"]["ground_truth"],
        "difficulty": int(extra["difficulty"]),
        "index": int(extra["index"]),
        "scorer": extra.get("scorer") or "strict",  # tool use: the task's scorer (tasks.compute_score)
    }


def load_docs(data_path: str | None = None, data_source: str | None = None, **_: Any):
    """lm-eval ``custom_dataset``: the docs of ``data_path`` as ``DatasetDict({"test": ...})``.

    lm-eval calls it with the task's metadata and dataset_kwargs as keyword arguments (unknown ones such as
    ``version`` are ignored). ``data_source``, when given, keeps only the rows of that source (a SciKnowEval
    test file may hold all four domains) and fails if none is left.
    """
    import datasets

    if data_path is None:
        raise ValueError("no evaluation data: pass data_path in the task's dataset_kwargs or lm-eval metadata")
    docs = [row_to_doc(row, source=data_path, row_number=i) for i, row in enumerate(read_rows(data_path))]
    if data_source is not None:
        docs = [doc for doc in docs if doc["data_source"] == data_source]
        if not docs:
            raise ValueError(f"{data_path}: no rows with data_source {data_source!r}")
    if not docs:
        raise ValueError(f"{data_path}: no rows")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


# --------------------------------------------------------------------------------------------------- scoring


def score_responses(doc: dict[str, Any], responses: Sequence[str]) -> tuple[list[str], list[float]]:
    """``(preds, accs)`` of k responses to one doc, scored exactly as in training."""
    from scsdpo_verl.tasks import compute_score

    scored = [
        compute_score(doc["data_source"], response, doc["ground_truth"],
                      {"question_id": doc["question_id"], "scorer": doc.get("scorer") or "strict"})
        for response in responses
    ]
    return [s["pred"] for s in scored], [float(s["acc"]) for s in scored]


def _per_doc(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]], reduce) -> list[list[float]]:
    return [[reduce(*score_responses(doc, responses))] for responses, doc in zip(resps, docs, strict=True)]


def mean_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Custom lm-eval filter: per doc, [mean@k]."""
    return _per_doc(resps, docs, lambda preds, accs: mean_accuracy(accs))


def majority_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Custom lm-eval filter: per doc, [exact maj@k]."""
    return _per_doc(resps, docs, exact_majority_accuracy)


def bootstrap_majority_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Custom lm-eval filter: per doc, [verl's bootstrap maj@k]."""
    return _per_doc(resps, docs, bootstrap_majority_accuracy)


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, float]:
    """lm-eval hook: the filter already reduced the k responses to one accuracy (after ``take_first``)."""
    value = results[0]
    if isinstance(value, (list, tuple)):
        raise TypeError("each filter pipeline must end with take_first (got a list of responses)")
    return {"acc": float(value)}


# (filter name pattern, filter function in this module)
FILTERS = (
    ("mean@{k}", "mean_filter"),
    ("maj@{k}", "majority_filter"),
    ("maj@{k}_bootstrap", "bootstrap_majority_filter"),
)


def filter_names(repeats: int) -> list[str]:
    """The names of the three filter pipelines for k = ``repeats`` (lm-eval reports ``acc,<name>``)."""
    return [name.format(k=repeats) for name, _ in FILTERS]


def filter_list_yaml(repeats: int) -> str:
    """The ``filter_list`` block of a task YAML for k = ``repeats`` (``!function`` tags need hand-written YAML)."""
    lines = ["filter_list:"]
    for (_, function), label in zip(FILTERS, filter_names(repeats), strict=True):
        lines += [
            f'  - name: "{label}"',
            "    filter:",
            f"      - {{function: custom, filter_fn: !function {__name__}.{function}}}",
            "      - {function: take_first}",
        ]
    return "\n".join(lines) + "\n"
