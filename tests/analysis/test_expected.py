"""A run's tables against the expected ones: equal cells pass, others and missing rows are flagged."""

from __future__ import annotations

import csv
import json

import pytest

from scsdpo_verl.analysis.expected import MACHINE_FIELDS, compare_rows, compare_tables, this_machine


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


def test_publish_copies_tables_figures_reports_and_a_manifest_then_compares_equal(tmp_path):
    from scsdpo_verl.pipeline import main

    results, figures = tmp_path / "results", tmp_path / "figures"
    (results / "tables").mkdir(parents=True)
    (results / "models" / "qwen3-tiny").mkdir(parents=True)
    figures.mkdir()
    (results / "tables" / "main_table.csv").write_text("model,metric,mean\na,mean@16,0.5\n")
    (results / "tables" / "main_table.md").write_text("| a |\n")
    (results / "tables" / "expected_comparison.csv").write_text("stale\n")
    (results / "models" / "qwen3-tiny" / "base_report.json").write_text("{}")
    (figures / "fig1.png").write_bytes(b"png")
    dest = tmp_path / "docs" / "default"
    assert main(["publish-results", str(dest), "--command", "snakemake --cores all", "--wall-seconds", "1200",
                 "--results", str(results), "--figures", str(figures)]) == 0
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert manifest["command"] == "snakemake --cores all" and manifest["wall_seconds"] == 1200
    assert sorted(manifest["files"]) == ["figures/fig1.png", "models/qwen3-tiny_base_report.json",
                                         "tables/main_table.csv", "tables/main_table.md"]
    assert not (dest / "tables" / "expected_comparison.csv").exists()
    here = this_machine()
    assert {k: manifest[k] for k in MACHINE_FIELDS} == {k: here[k] for k in MACHINE_FIELDS}
    assert manifest["machine"] == f"{here['cores']} cores, {here['cpu']}"
    rows = compare_tables({"main_table": results / "tables" / "main_table.csv"}, dest / "tables", tmp_path / "c.csv",
                          tmp_path / "c.md", machine=here)
    assert [r["flag"] for r in rows] == [""]
    with open(tmp_path / "c.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["table"], r["row"], r["flag"]) for r in written[:3]] == [("machine", f, "") for f in MACHINE_FIELDS]
    assert "another kind of machine" not in (tmp_path / "c.md").read_text()


def test_another_machine_is_named_and_kept_out_of_the_cell_count(tmp_path):
    expected = tmp_path / "docs" / "tables"
    expected.mkdir(parents=True)
    (expected / "main.csv").write_text("model,metric,mean\na,mean@16,0.5\nb,mean@16,0.25\n")
    ours = tmp_path / "main.csv"
    ours.write_text("model,metric,mean\na,mean@16,0.5\nb,mean@16,0.3\n")
    # a manifest from before the machine fields: only its "machine" text, the CPU name after the core count
    (tmp_path / "docs" / "MANIFEST.json").write_text(json.dumps({"commit": "5edc499b8b56ffff", "command": "run",
                                                                 "machine": "2 cores, Intel(R) Xeon(R) Processor"}))
    machine = {"cores": 2, "cpu": "AMD EPYC", "cpu_capability": "AVX2", "torch": "2.13.0+cpu"}
    rows = compare_tables({"main": ours}, expected, tmp_path / "c.csv", tmp_path / "c.md", machine=machine)
    assert [r["flag"] for r in rows] == ["", "DIFFERENT"]  # the returned rows are the tables' cells only
    with open(tmp_path / "c.csv", newline="") as handle:
        by_row = {r["row"]: r for r in csv.DictReader(handle) if r["table"] == "machine"}
    assert (by_row["cpu"]["yours"], by_row["cpu"]["expected"], by_row["cpu"]["flag"]) == (
        "AMD EPYC", "Intel(R) Xeon(R) Processor", "OTHER MACHINE")
    assert (by_row["cpu_capability"]["expected"], by_row["cpu_capability"]["flag"]) == ("not recorded", "")
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("1 of 2 cells differ") and "commit 5edc499b8b56 with `run`" in text
    assert "another kind of machine** (cpu differs)" in text
    # the same CPU but another torch build is another machine too; without a manifest nothing is said
    (tmp_path / "docs" / "MANIFEST.json").write_text(json.dumps({**machine, "torch": "2.12.0+cpu"}))
    compare_tables({"main": ours}, expected, tmp_path / "c.csv", tmp_path / "c.md", machine=machine)
    assert "(torch differs)" in (tmp_path / "c.md").read_text()
    (tmp_path / "docs" / "MANIFEST.json").unlink()
    compare_tables({"main": ours}, expected, tmp_path / "c.csv", tmp_path / "c.md", machine=machine)
    text = (tmp_path / "c.md").read_text()
    assert "| machine |" not in text and "kind of machine" not in text


def test_publish_copies_only_the_runs_own_base_reports_and_names_the_given_commit(tmp_path, monkeypatch):
    import subprocess

    from scsdpo_verl.pipeline import main

    # a checkout of its own with two commits, so the test needs no history of the project's (shallow clones, tarballs)
    repo = tmp_path / "checkout"
    repo.mkdir()
    monkeypatch.chdir(repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], check=True)
    for message in ("the run's commit", "a later one"):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "tables" / "main_table.csv").write_text("model,metric,mean\na,mean@16,0.5\n")
    (results / "tables" / "base_models.csv").write_text("model,task,pass_rate\nqwen3-tiny,t,0.5\n")
    for model in ("qwen3-tiny", "olmo3-tiny"):  # olmo3-tiny: another config's base in the shared results/
        (results / "models" / model).mkdir(parents=True)
        (results / "models" / model / "base_report.json").write_text("{}")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig1.png").write_bytes(b"png")
    dest = tmp_path / "dest"
    assert main(["publish-results", str(dest), "--command", "x", "--results", str(results), "--figures",
                 str(tmp_path / "figures"), "--commit", "HEAD~1"]) == 0
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert [f for f in manifest["files"] if f.startswith("models/")] == ["models/qwen3-tiny_base_report.json"]
    assert not (dest / "models" / "olmo3-tiny_base_report.json").exists()
    parent = subprocess.run(["git", "log", "-1", "--skip=1", "--format=%H"], capture_output=True, text=True)
    assert manifest["commit"] == parent.stdout.strip() and len(manifest["commit"]) == 40
    with pytest.raises(SystemExit, match="'no-such-rev' is not a commit"):
        main(["publish-results", str(dest), "--command", "x", "--results", str(results), "--commit", "no-such-rev"])


def test_publish_refuses_a_run_without_tables(tmp_path):
    from scsdpo_verl.analysis.expected import publish_reference

    with pytest.raises(FileNotFoundError, match="no tables under"):
        publish_reference(tmp_path / "results", tmp_path / "figures", tmp_path / "dest", command="x", commit="y")


def test_publish_refuses_a_run_without_figures(tmp_path):
    """A --figures that names no figures (the workflow writes them beside results/, not in it) is an error, not a
    reference with its figures silently missing."""
    from scsdpo_verl.analysis.expected import publish_reference

    (tmp_path / "results" / "tables").mkdir(parents=True)
    (tmp_path / "results" / "tables" / "main_table.csv").write_text("model,metric,mean\na,mean@16,0.5\n")
    with pytest.raises(FileNotFoundError, match=r"no figures under .*results/figures"):
        publish_reference(tmp_path / "results", tmp_path / "results" / "figures", tmp_path / "dest", command="x",
                          commit="y")
