"""verl RL parquet rows: one dict per question, written and read with pyarrow.

A row is what verl's ``RLHFDataset`` reads and what its reward manager hands to ``compute_score``::

    {
        "data_source": "synthetic_science",                # picks the scorer (see tasks.compute_score)
        "prompt": [{"role": "system", "content": ...},      # chat messages, rendered by the chat template
                   {"role": "user", "content": ...}],
        "ability": "mcq",                                   # "mcq" or "tooluse"
        "reward_model": {"style": "rule", "ground_truth": "C"},
        "extra_info": {"index": 0, "split": "train", "difficulty": 3, "question_id": "...",
                       "solution": "...", "domain": "..."},
    }

``extra_info`` always carries the same keys (``EXTRA_INFO_FIELDS``; tool-use rows written by the workflow add
``scorer``, ``"strict"`` or ``"reference"``, for ``compute_score``) so that rows of every task can share one
parquet schema. ``question_id`` is stable across runs and seeds (verl's ``uid`` is random per step, so
cross-step statistics need it); ``difficulty`` is 1..L for the synthetic twins and 0 for the real datasets
(ungraded); ``solution`` is a worked response scoring 1, or "" when none exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROW_FIELDS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
EXTRA_INFO_FIELDS = ("index", "split", "difficulty", "question_id", "solution", "domain")
EXTRA_INFO_TYPES: dict[str, type] = {
    "index": int,
    "split": str,
    "difficulty": int,
    "question_id": str,
    "solution": str,
    "domain": str,
}
ROLES = ("system", "user", "assistant")
SCORERS = ("strict", "reference")  # extra_info.scorer of tool-use rows (see tasks.tooluse)


class TaskDataError(ValueError):
    """Bad input data; the message names the file, the row and the field."""


def data_error(source: str | Path, row: int | None, field: str | None, problem: str) -> TaskDataError:
    """Build a ``TaskDataError`` whose message reads ``<file>, row <n>, field '<f>': <problem>``."""
    where = str(source)
    if row is not None:
        where += f", row {row}"
    if field is not None:
        where += f", field '{field}'"
    return TaskDataError(f"{where}: {problem}")


def make_row(
    *,
    data_source: str,
    messages: list[dict[str, str]],
    ability: str,
    ground_truth: str,
    index: int,
    split: str,
    question_id: str,
    difficulty: int = 0,
    solution: str = "",
    domain: str = "",
) -> dict[str, Any]:
    """Assemble one verl RL row (see the module docstring for the layout)."""
    return {
        "data_source": data_source,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {
            "index": int(index),
            "split": split,
            "difficulty": int(difficulty),
            "question_id": question_id,
            "solution": solution,
            "domain": domain,
        },
    }


def validate_row(row: Mapping[str, Any], *, source: str | Path = "<rows>", row_number: int = 0) -> None:
    """Raise ``TaskDataError`` naming the row and field if ``row`` does not follow the RL row layout."""

    def fail(field: str, problem: str) -> TaskDataError:
        return data_error(source, row_number, field, problem)

    for field in ROW_FIELDS:
        if field not in row:
            raise fail(field, "missing")
    for field in ("data_source", "ability"):
        if not isinstance(row[field], str) or not row[field]:
            raise fail(field, f"expected a non-empty string, got {row[field]!r}")
    messages = row["prompt"]
    if not isinstance(messages, list) or not messages:
        raise fail("prompt", "expected a non-empty list of chat messages")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
            raise fail(f"prompt[{i}]", "expected a dict with exactly the keys 'role' and 'content'")
        if message["role"] not in ROLES or not isinstance(message["content"], str):
            raise fail(f"prompt[{i}]", f"bad role {message['role']!r} or non-string content")
    if messages[-1]["role"] != "user":
        raise fail("prompt", "the last message must be the user's")
    reward_model = row["reward_model"]
    if not isinstance(reward_model, Mapping) or reward_model.get("style") != "rule":
        raise fail("reward_model.style", "expected 'rule'")
    if not isinstance(reward_model.get("ground_truth"), str) or not reward_model["ground_truth"]:
        raise fail("reward_model.ground_truth", "expected a non-empty string")
    extra_info = row["extra_info"]
    if not isinstance(extra_info, Mapping):
        raise fail("extra_info", "expected a dict")
    for key, expected_type in EXTRA_INFO_TYPES.items():
        if key not in extra_info:
            raise fail(f"extra_info.{key}", "missing")
        value = extra_info[key]
        # bool is an int subclass; an index or difficulty of True is a bug, not a number
        if not isinstance(value, expected_type) or isinstance(value, bool):
            raise fail(f"extra_info.{key}", f"expected {expected_type.__name__}, got {value!r}")
    if "scorer" in extra_info and extra_info["scorer"] not in SCORERS:  # tool use only (tasks.tooluse)
        raise fail("extra_info.scorer", f"expected one of {SCORERS}, got {extra_info['scorer']!r}")


def write_parquet(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Validate ``rows`` and write them to one parquet file (parent folders are created).

    Every row must carry the same ``extra_info`` keys so that the struct column has one type.
    """
    rows = list(rows)
    path = Path(path)
    if not rows:
        raise ValueError(f"{path}: refusing to write an empty parquet file")
    keys = set(rows[0]["extra_info"]) if "extra_info" in rows[0] else set()
    for i, row in enumerate(rows):
        validate_row(row, source=path, row_number=i)
        if set(row["extra_info"]) != keys:
            raise data_error(path, i, "extra_info", f"keys {sorted(row['extra_info'])} differ from row 0's")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), path)
    return path


def read_parquet(path: str | Path) -> list[dict[str, Any]]:
    """Read a parquet file written by ``write_parquet`` back into a list of row dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such parquet file")
    return pq.read_table(path).to_pylist()
