"""A run's tables next to the expected ones shipped under ``docs/results/`` (a regression check).

``compare_tables`` matches the rows of two CSV tables by their non-numeric columns (model, method, task, metric,
...) and lists every numeric cell with both values; a cell that differs by more than ``tolerance`` (or a row
that only one side has) is flagged. The same seeds on the same kind of machine give the same numbers, so a
flag means another machine, another library version, or a change in the code or config. The comparison names
both machines (``this_machine``, recorded in the reference's ``MANIFEST.json`` by ``publish_reference``): on a
2-core AMD EPYC (AVX2) the default's reference from a Xeon (AVX-512) differed in 682 of 916 cells, its bases
included.
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
# what decides a run's floating-point numbers besides code, config and seed: the CPU kind and the torch build
MACHINE_FIELDS = ("cpu", "cpu_capability", "torch")


def this_machine() -> dict[str, Any]:
    """The machine a run is on: ``cores``, ``cpu`` (the model name in /proc/cpuinfo), ``cpu_capability`` (the
    vector instruction set torch's kernels use: AVX512, AVX2, ...) and ``torch`` (its version)."""
    import os

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if cpuinfo.is_file() else "unknown CPU"
    return {"cores": os.cpu_count(), "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def machine_rows(yours: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One comparison line per ``MACHINE_FIELDS`` entry (table ``machine``), flagged ``OTHER MACHINE`` where the
    two differ. A manifest written before these fields existed has only its ``machine`` text: the CPU name is
    read from it (``"2 cores, <cpu>"``) and the other fields show as not recorded."""
    recorded = dict(manifest)
    if "cpu" not in recorded and isinstance(recorded.get("machine"), str):
        recorded["cpu"] = recorded["machine"].split(", ", 1)[-1]
    rows = []
    for field in MACHINE_FIELDS:
        mine, theirs = yours.get(field), recorded.get(field)
        rows.append({"table": "machine", "row": field, "column": "", "yours": "" if mine is None else str(mine),
                     "expected": "not recorded" if theirs is None else str(theirs), "difference": "",
                     "flag": "OTHER MACHINE" if theirs is not None and str(mine) != str(theirs) else ""})
    return rows


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


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
                   out_md: str | Path | None = None, tolerance: float = 1e-9,
                   machine: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Compare each table (name -> this run's CSV) with ``expected_dir/<name>.csv``; write the comparison.

    With ``machine`` (this run's, see ``this_machine``) and a ``MANIFEST.json`` next to ``expected_dir`` (as
    ``publish_reference`` writes it), the comparison starts with the two machines (``machine_rows``); on another
    CPU kind the markdown says that differing cells are expected there. The cell count covers the tables only.
    """
    rows: list[dict[str, Any]] = []
    for name, path in yours.items():
        reference = Path(expected_dir) / f"{name}.csv"
        if not reference.is_file():
            rows.append({"table": name, "row": "", "column": "", "yours": "present", "expected": "",
                         "difference": "", "flag": f"no expected table {reference}"})
            continue
        rows.extend(compare_rows(name, _read(path), _read(reference), tolerance))
    manifest_path = Path(expected_dir).parent / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    machines = machine_rows(machine, manifest) if machine is not None and manifest is not None else []
    write_csv(machines + rows, out_csv, COLUMNS)
    if out_md is not None:
        flagged = [r for r in rows if r["flag"]]
        text = f"{len(flagged)} of {len(rows)} cells differ from the expected results in {expected_dir}\n\n"
        if machines:
            other = [r["row"] for r in machines if r["flag"]]
            text += (f"The expected results were made at commit {str(manifest.get('commit', '?'))[:12]} with "
                     f"`{manifest.get('command', '?')}`.\n\n")
            if other:
                text += (f"**This run is on another kind of machine** ({', '.join(other)} "
                         f"{'differs' if len(other) == 1 else 'differ'}). The warm start "
                         "rounds differently there, so the base models and every number after them are expected "
                         "to differ: compare the spread of the results, not cell by cell.\n\n")
            text += markdown_table(machines, COLUMNS, _cell) + "\n\n"
        table = markdown_table(flagged + [r for r in rows if not r["flag"]], COLUMNS, _cell)
        Path(out_md).write_text(text + table)
    return rows


# what a reference run ships: the tables compared above, the rest of the tables, the figures, the base reports
PUBLISHED_GLOBS = {"tables": ("*.csv", "*.md"), "figures": ("*.png",)}


def publish_reference(results_dir: str | Path, figures_dir: str | Path, dest: str | Path, *, command: str,
                      commit: str, wall_seconds: float | None = None, machine: str = "",
                      machine_fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Copy a finished run's tables, figures and base-model reports to ``dest`` (``docs/results/<config>``) with a
    ``MANIFEST.json`` naming the commit, the command, the machine (``machine_fields``: ``MACHINE_FIELDS`` of
    ``this_machine()``) and the run time, so that a later run with
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
    for sub, source in (("tables", results_dir / "tables"), ("figures", Path(figures_dir))):
        if not any(f.startswith(f"{sub}/") for f in files):  # a reference without them would pass for complete
            raise FileNotFoundError(f"no {sub} under {source}: run the workflow first (or point --{sub} at them)")
    recorded = {field: machine_fields[field] for field in MACHINE_FIELDS if field in (machine_fields or {})}
    manifest = {"commit": commit, "command": command, "wall_seconds": wall_seconds, "machine": machine, **recorded,
                "files": files}
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
