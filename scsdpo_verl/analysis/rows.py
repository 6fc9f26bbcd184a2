"""Small tables kept as lists of dicts (the base-model table, the expected-results comparison): CSV and Markdown."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path, columns: Sequence[str]) -> None:
    """``rows`` as CSV with ``columns`` in that order (None -> empty cell); creates the parent directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   cell: Callable[[Any], str] = str) -> str:
    """A Markdown table of ``rows`` with ``columns``; ``cell`` renders a value."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
