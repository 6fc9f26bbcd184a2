"""A run's tables next to the expected ones shipped under ``docs/results/`` (a regression check).

``compare_tables`` matches the rows of two CSV tables by their non-numeric columns (model, method, task, metric,
...) and lists every numeric cell with both values; a cell that differs by more than ``tolerance`` (or a row
that only one side has) is flagged. The same seeds on the same kind of machine give the same numbers, so a
flag means another machine, another library version, or a change in the code or config.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scsdpo_verl.analysis.rows import markdown_table, write_csv

COLUMNS = ("table", "row", "column", "yours", "expected", "difference", "flag")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _read(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def compare_rows(name: str, yours: Sequence[Mapping[str, str]], expected: Sequence[Mapping[str, str]],
                 tolerance: float = 1e-9) -> list[dict[str, Any]]:
    """Cell-by-cell comparison of two tables with the same columns (see the module doc)."""
    columns = list(expected[0]) if expected else list(yours[0]) if yours else []
    # key columns: those where no expected cell is a number (empty cells do not decide)
    keys = [c for c in columns if not any(_number(row.get(c, "")) is not None for row in [*expected, *yours])]
    values = [c for c in columns if c not in keys]

    def index(rows: Sequence[Mapping[str, str]]) -> dict[str, Mapping[str, str]]:
        return {" / ".join(row.get(k, "") for k in keys): row for row in rows}

    mine, theirs = index(yours), index(expected)
    out: list[dict[str, Any]] = []
    for row in [*theirs, *(r for r in mine if r not in theirs)]:
        if row not in mine or row not in theirs:
            out.append({"table": name, "row": row, "column": "", "yours": "" if row not in mine else "present",
                        "expected": "" if row not in theirs else "present", "difference": "",
                        "flag": "only in yours" if row in mine else "missing in yours"})
            continue
        for column in values:
            a, b = _number(mine[row].get(column, "")), _number(theirs[row].get(column, ""))
            if a is None and b is None:
                continue
            differs = a is None or b is None or abs(a - b) > tolerance
            out.append({"table": name, "row": row, "column": column, "yours": "" if a is None else a,
                        "expected": "" if b is None else b, "difference": "" if differs and (a is None or b is None)
                        else a - b, "flag": "DIFFERENT" if differs else ""})
    return out


def compare_tables(yours: Mapping[str, str | Path], expected_dir: str | Path, out_csv: str | Path,
                   out_md: str | Path | None = None, tolerance: float = 1e-9) -> list[dict[str, Any]]:
    """Compare each table (name -> this run's CSV) with ``expected_dir/<name>.csv``; write the comparison."""
    rows: list[dict[str, Any]] = []
    for name, path in yours.items():
        reference = Path(expected_dir) / f"{name}.csv"
        if not reference.is_file():
            rows.append({"table": name, "row": "", "column": "", "yours": "present", "expected": "",
                         "difference": "", "flag": f"no expected table {reference}"})
            continue
        rows.extend(compare_rows(name, _read(path), _read(reference), tolerance))
    write_csv(rows, out_csv, COLUMNS)
    if out_md is not None:
        flagged = [r for r in rows if r["flag"]]
        table = markdown_table(flagged + [r for r in rows if not r["flag"]], COLUMNS,
                               lambda value: f"{value:.4f}" if isinstance(value, float) else str(value))
        Path(out_md).write_text(f"{len(flagged)} of {len(rows)} cells differ from the expected results in "
                                f"{expected_dir}\n\n{table}")
    return rows


# what a reference run ships: the tables compared above, the rest of the tables, the figures, the base reports
PUBLISHED_GLOBS = {"tables": ("*.csv", "*.md"), "figures": ("*.png",)}


def publish_reference(results_dir: str | Path, figures_dir: str | Path, dest: str | Path, *, command: str,
                      commit: str, wall_seconds: float | None = None, machine: str = "") -> dict[str, Any]:
    """Copy a finished run's tables, figures and base-model reports to ``dest`` (``docs/results/<config>``) with a
    ``MANIFEST.json`` naming the commit, the command, the machine and the run time, so that a later run with
    ``expected_results: <dest>/tables`` is compared with it. ``expected_comparison.*`` is not copied (it is the
    comparison with the previous reference). Base reports: those of the models in the run's base-model table (a
    results directory shared by several configs holds other configs' bases too), all of them without that table.
    Returns the manifest."""
    import shutil

    results_dir, dest = Path(results_dir), Path(dest)
    files: list[str] = []
    for sub, source in (("tables", results_dir / "tables"), ("figures", Path(figures_dir))):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for pattern in PUBLISHED_GLOBS[sub]:
            for path in sorted(source.glob(pattern)):
                if path.stem != "expected_comparison":
                    shutil.copy2(path, dest / sub / path.name)
                    files.append(f"{sub}/{path.name}")
    base_table = results_dir / "tables" / "base_models.csv"
    run_models = None
    if base_table.is_file():
        with open(base_table, newline="") as handle:
            run_models = {row["model"] for row in csv.DictReader(handle)}
    for report in sorted((results_dir / "models").glob("*/base_report.json")):
        if run_models is not None and report.parent.name not in run_models:
            continue
        (dest / "models").mkdir(parents=True, exist_ok=True)
        shutil.copy2(report, dest / "models" / f"{report.parent.name}_base_report.json")
        files.append(f"models/{report.parent.name}_base_report.json")
    if not any(f.startswith("tables/") for f in files):
        raise FileNotFoundError(f"no tables under {results_dir / 'tables'}: run the workflow first")
    manifest = {"commit": commit, "command": command, "wall_seconds": wall_seconds, "machine": machine,
                "files": files}
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
