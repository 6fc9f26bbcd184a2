"""Reading raw dataset files (JSON array, JSON lines, parquet) and counting what filters keep.

Both upstream layouts exist in the wild: the SDPO reference's processed splits are JSON lines (one object per
line), its pre-split files and ToolAlpaca's are one JSON array. ``read_records`` accepts either and reports a
malformed file with its name and line.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scsdpo_verl.tasks.schema import data_error

logger = logging.getLogger(__name__)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Return the list of JSON objects stored in ``path`` (.json/.jsonl array or lines, or .parquet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise data_error(path, None, None, f"malformed JSON at line {err.lineno}, column {err.colno}: "
                             f"{err.msg}") from err
    else:
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise data_error(path, None, None, f"malformed JSON on line {line_number}: {err.msg}") from err
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise data_error(path, i, None, f"expected a JSON object, got {type(record).__name__}")
    return records


def require(record: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str | Path, row: int) -> Any:
    """Return ``record[key]`` or raise naming the file, row and field when it is missing or mistyped.

    ``key`` may be dotted (``details.level``) to reach into nested dicts.
    """
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value or value[part] is None:
            raise data_error(source, row, key, "missing")
        value = value[part]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise data_error(source, row, key, f"expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


@dataclass
class FilterReport:
    """What a loader read, kept and dropped (by reason), so that nothing disappears silently."""

    source: str
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "kept": self.kept, "dropped": dict(self.dropped)}

    def log(self) -> None:
        logger.info("%s: read %d, kept %d, dropped %s", self.source, self.read, self.kept,
                    dict(self.dropped) or "none")


def detect_format_by_keys(path: str | Path, formats: dict[str, tuple[str, tuple[str, ...]]]) -> str:
    """The first format whose required keys the file's first record has; a clear error naming the file if none.

    ``formats`` maps a format name to (label for messages, required keys), in the order to try them.
    """
    records = read_records(path)
    if not records:
        raise data_error(path, None, None, "empty file; cannot detect its format")
    keys = set(records[0])
    for name, (_, required) in formats.items():
        if set(required) <= keys:
            return name
    expected = " nor ".join(f"{label} ({', '.join(required)})" for label, required in formats.values())
    raise data_error(path, 0, None, f"neither {expected} keys; found {sorted(keys)}")
