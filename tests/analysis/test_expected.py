"""A run's tables against the expected ones: equal cells pass, others and missing rows are flagged."""

from __future__ import annotations

import csv

import pytest

from scsdpo_verl.analysis.expected import compare_rows, compare_tables


def _rows(*values):
    return [{"model": m, "metric": "mean@16", "mean": v, "n_seeds": "2"} for m, v in values]


def test_rows_matched_by_their_text_columns_and_cells_flagged():
    out = compare_rows("main", _rows(("a", "0.5"), ("b", "0.3"), ("c", "0.1")), _rows(("a", "0.5"), ("b", "0.25"),
                                                                                     ("d", "0.2")))
    by = {(r["row"], r["column"]): r for r in out}
    assert by[("a / mean@16", "mean")]["flag"] == "" and by[("a / mean@16", "n_seeds")]["flag"] == ""
    assert by[("b / mean@16", "mean")]["flag"] == "DIFFERENT"
    assert by[("b / mean@16", "mean")]["difference"] == pytest.approx(0.05)
    assert by[("d / mean@16", "")]["flag"] == "missing in yours" and by[("c / mean@16", "")]["flag"] == "only in yours"
    assert len(out) == 6  # a and b: two numeric cells each; c and d: one line each


def test_empty_cells_count_and_missing_expected_table_is_said(tmp_path):
    ours = tmp_path / "main.csv"
    with open(ours, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["model", "metric", "mean", "n_seeds"])
        writer.writeheader()
        writer.writerows([{"model": "a", "metric": "mean@16", "mean": "", "n_seeds": "2"}])
    expected = tmp_path / "expected"
    expected.mkdir()
    (expected / "main.csv").write_text("model,metric,mean,n_seeds\na,mean@16,0.5,2\n")
    rows = compare_tables({"main": ours, "base": ours}, expected, tmp_path / "cmp.csv", tmp_path / "cmp.md")
    flags = {(r["table"], r["column"]): r["flag"] for r in rows}
    assert flags[("main", "mean")] == "DIFFERENT" and flags[("main", "n_seeds")] == ""
    assert flags[("base", "")].startswith("no expected table")
    assert (tmp_path / "cmp.md").read_text().startswith("2 of 3 cells differ")
