"""Published numbers: the data file's consistency, bad input, and the comparison with hand-worked values.

The comparison runs on the fixture results (conftest.py) with a small published file (FAKE below) and the budget
15 s. This run's cells, by hand: validations at steps 0, 3, 6 (0.2, then 0.35 / 0.30 + 0.1 for SC-SDPO + 0.02 x
seed), step 3 at 6 s (seed 0) and 9 s (seed 1), step 6 at 12 s and 18 s. So best mean@4 within 15 s: SDPO 0.35 and
0.37 (mean 0.36), SC-SDPO 0.45 and 0.47 (0.46); final mean@16 (lm-eval): base sci 0.30, tool 0.20, SDPO sci 0.40
and 0.50; Δ SC-SDPO − SDPO average final maj@16 (bootstrap = mean + 0.02): 0.1 for both seeds.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from scsdpo_verl.analysis.budgets import Budget, best_within_budgets
from scsdpo_verl.analysis.figures import fig9_paper_vs_this_run
from scsdpo_verl.analysis.make import REPO_DIR
from scsdpo_verl.analysis.published import PublishedNames, load_published, mapping_from_config
from scsdpo_verl.analysis.tables import build_main_table, build_paper_comparison, main_table_comparison

from .conftest import CONFIG

FAKE = {
    "sources": {"a": {"citation": "Paper A", "where": "https://a", "secondary": False},
                "b": {"citation": "Blog B quoting A", "where": "https://b", "secondary": True}},
    "tables": [
        {"source": "a", "model": "M", "metric": "mean@16", "budget": {"unit": "seconds", "value": 15},
         "benchmarks": ["Sci", "Tool"], "rows": {"sdpo": [30.0, 20.0], "grpo_off_policy": [1.0, 1.0]}},
        {"source": "b", "model": "M", "metric": "mean@16", "budget": {"unit": "seconds", "value": 15},
         "benchmarks": ["Sci"], "rows": {"sdpo": [99.0], "sc_sdpo": [50.0]}},
        {"source": "a", "model": "M", "metric": "mean@16", "budget": None, "benchmarks": ["Sci", "average"],
         "rows": {"base": [25.0, 24.0]}},
        {"source": "a", "model": "M", "metric": "maj@16", "budget": None, "benchmarks": ["average"],
         "rows": {"delta_sc_sdpo_minus_sdpo": [4.0]}},
        {"source": "a", "model": "M", "metric": "mean@16", "budget": {"unit": "hours", "value": 5},
         "benchmarks": ["Sci"], "rows": {"sdpo": [70.0]}},
        {"source": "a", "model": "Other", "metric": "mean@16", "budget": None, "benchmarks": ["Sci"],
         "rows": {"sdpo": [10.0]}},
    ],
}
NAMES = PublishedNames({"tiny": "M"}, {"sci": "Sci", "tool": "Tool"})


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(FAKE))
    return load_published(path)


@pytest.fixture
def main_and_comparison(evals, training, fake):
    budgets = best_within_budgets(training, [Budget("seconds", 15)])
    table = build_main_table(evals, budgets=budgets, published=(fake, NAMES))
    return table, main_table_comparison(table, evals, (fake, NAMES))


def row(frame: pd.DataFrame, **keys) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in keys.items():
        mask &= frame[key] == value
    assert mask.sum() == 1, f"{keys}: {mask.sum()} rows"
    return frame[mask].iloc[0]


def test_the_projects_published_file_is_consistent():
    published = load_published(REPO_DIR / "config" / "published.yaml")
    values = published.values.set_index(["source", "model", "method", "benchmark", "metric", "budget"])["value"]
    # DRIFT's "avg" is the mean of its five tasks (as printed, to 0.05)
    drift = published.values[published.values["source"] == "drift_readme"]
    for _, part in drift.groupby("method"):
        tasks = part[part["benchmark"] != "average"]["value"]
        assert len(tasks) == 5 and abs(tasks.mean() - part[part["benchmark"] == "average"]["value"].iloc[0]) < 5e-4
    # its base and SDPO rows are the SDPO paper's base and 5 h SDPO numbers
    for benchmark in ("Biology", "Chemistry", "Material", "Physics", "Tool use"):
        assert values[("drift_readme", "Qwen3-8B", "base", benchmark, "mean@16", "")] == \
            values[("sdpo_paper", "Qwen3-8B", "base", benchmark, "mean@16", "")]
        assert values[("drift_readme", "Qwen3-8B", "sdpo", benchmark, "mean@16", "5 h")] == \
            values[("sdpo_paper", "Qwen3-8B", "sdpo", benchmark, "mean@16", "5 h")]
    # the seed paper's abstract: +3.2 / +4.3 (Qwen3-8B), +1.8 / +3.0 (OLMo-3-7B) over SDPO
    gains = published.values[published.values["method"] == "delta_sc_sdpo_minus_sdpo"]
    assert sorted(zip(gains["model"], gains["metric"], (gains["value"] * 100).round(1), strict=True)) == [
        ("OLMo-3-7B", "maj@16", 3.0), ("OLMo-3-7B", "mean@16", 1.8), ("Qwen3-8B", "maj@16", 4.3),
        ("Qwen3-8B", "mean@16", 3.2)]
    assert published.sources["drift_readme"]["secondary"] and not published.sources["sdpo_paper"]["secondary"]
    # config/paper.yaml maps its models and all five tasks onto the file
    paper = yaml.safe_load((REPO_DIR / "config" / "paper.yaml").read_text())
    names = mapping_from_config(paper, published)
    assert set(names.models) == set(paper["models"]) and set(names.benchmarks) == set(paper["tasks"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["tables"][0]["rows"].update(sdpo=[30.0]), r"tables\[0\]\.rows\.sdpo: 1 values for 2 benchmarks"),
        (lambda d: d["tables"][0].update(source="c"), r"tables\[0\]\.source: 'c' is not one of sources"),
        (lambda d: d["tables"][1].update(metric="pass@1"), r"tables\[1\]\.metric: 'pass@1' is not mean@k or maj@k"),
        (lambda d: d["tables"][0].update(budget={"unit": "days", "value": 1}), r"tables\[0\]\.budget\.unit"),
        (lambda d: d["tables"][2]["rows"].update(base=[250.0, 24.0]),
         r"tables\[2\]\.rows\.base: 250\.0 \(Sci\) is not a percentage"),
        (lambda d: d["sources"]["a"].pop("citation"), r"sources\.a\.citation"),
    ],
)
def test_bad_published_file_names_the_key(tmp_path, change, message):
    data = yaml.safe_load(yaml.safe_dump(FAKE))
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=rf"bad\.yaml: {message}"):
        load_published(path)


def test_mapping_errors_name_the_key(fake):
    with pytest.raises(ValueError, match=r"reporting\.published\.models\.tiny: 'Qwen' is not in"):
        mapping_from_config({**CONFIG, "reporting": {"published": {"models": {"tiny": "Qwen"}}}}, fake)
    with pytest.raises(ValueError, match=r"reporting\.published\.benchmarks\.chem: not a key of the config's tasks"):
        mapping_from_config({**CONFIG, "reporting": {"published": {"models": {"tiny": "M"},
                                                                   "benchmarks": {"chem": "Sci"}}}}, fake)


def test_comparison_hand_worked(main_and_comparison):
    _, comparison = main_and_comparison
    # 2 + 2 + 2 + 1 + 1 mapped values of model M (grpo_off_policy and model "Other" are not compared)
    assert len(comparison) == 8 and set(comparison["model"]) == {"tiny"}
    sdpo = row(comparison, algorithm="sdpo", benchmark="sci", source="a", budget="15 s")
    assert sdpo["compared_with"] == "best mean@4 ≤ 15 s" and sdpo["this_run"] == pytest.approx(0.36)
    assert sdpo["difference"] == pytest.approx(0.06) and sdpo["n_seeds"] == 2
    assert row(comparison, algorithm="sdpo", benchmark="tool")["difference"] == pytest.approx(0.16)
    sc = row(comparison, algorithm="sc_sdpo")
    assert sc["secondary"] and sc["difference"] == pytest.approx(-0.04)
    # the untrained model has no budget column: compared with its final mean@16
    base = row(comparison, algorithm="base", benchmark="sci")
    assert base["compared_with"] == "mean@16" and base["difference"] == pytest.approx(0.05)
    assert row(comparison, algorithm="base", benchmark="average")["difference"] == pytest.approx(0.01)
    delta = row(comparison, algorithm="delta_sc_sdpo_minus_sdpo")
    assert delta["compared_with"] == "maj@16_bootstrap" and delta["this_run"] == pytest.approx(0.1)
    assert delta["difference"] == pytest.approx(0.06) and delta["method"] == "delta_sc_sdpo_minus_sdpo"
    # a 5 h number, but this config reports no 5 h budget: listed, not compared with another column
    five = row(comparison, algorithm="sdpo", budget="5 h")
    assert five["compared_with"] == "" and math.isnan(five["this_run"]) and math.isnan(five["difference"])


def test_main_table_puts_paper_beside_this_run(main_and_comparison, tmp_path, evals, training, fake):
    table, _ = main_and_comparison
    # the primary source's SDPO value (0.30), not the secondary duplicate (0.99)
    paper = row(table, method="paper_sdpo", benchmark="sci", metric="best mean@4 ≤ 15 s")
    assert paper["mean"] == pytest.approx(0.30) and paper["label"] == "SDPO (paper)" and paper["n_seeds"] == 0
    diff = row(table, method="sdpo_minus_paper", benchmark="sci", metric="best mean@4 ≤ 15 s")
    assert diff["mean"] == pytest.approx(0.06) and diff["label"] == "SDPO: this run − paper"
    assert diff["half_width"] == pytest.approx(row(table, method="sdpo", benchmark="sci",
                                                   metric="best mean@4 ≤ 15 s")["half_width"])
    assert row(table, method="paper_sc_sdpo", benchmark="sci", metric="best mean@4 ≤ 15 s")["label"] == \
        "SC-SDPO (paper†)"
    build_main_table(evals, tmp_path / "main_table", budgets=best_within_budgets(training, [Budget("seconds", 15)]),
                     published=(fake, NAMES))
    markdown = (tmp_path / "main_table.md").read_text()
    line = next(x for x in markdown.splitlines() if x.startswith("| tiny | SDPO (paper) |"))
    assert line.split(" | ")[2] == "–"  # seeds
    assert "| 30.0 |" in line and "70.0" not in line  # the 5 h value has no column of its protocol here
    assert "† secondary: b: Blog B quoting A (https://b)" in markdown
    assert "Not compared: the published values measured within 5 h (this config reports no such budget" in markdown


def test_paper_comparison_table_and_figure(main_and_comparison, fake, tmp_path):
    _, comparison = main_and_comparison
    build_paper_comparison(comparison, fake, tmp_path / "paper_comparison")
    assert len(pd.read_csv(tmp_path / "paper_comparison.csv")) == 8
    markdown = (tmp_path / "paper_comparison.md").read_text()
    assert "| tiny | SDPO | Sci | mean@16 | 15 s | a | 30.0 | 36.0 ± 12.7 (sd 1.4) | best mean@4 ≤ 15 s | +6.0 |" \
        in markdown
    fig = fig9_paper_vs_this_run(comparison, tmp_path / "fig9")
    bars = {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches if p.get_gid()}
    texts = {t.get_gid(): t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid()}
    tag = "tiny/best mean@4 ≤ 15 s/sdpo/sci"
    assert bars[f"paper:{tag}"] == pytest.approx(30.0) and bars[f"this_run:{tag}"] == pytest.approx(36.0)
    assert texts[f"difference:{tag}"] == "+6.0"
    assert bars["paper:tiny/gain over SDPO/delta_sc_sdpo_minus_sdpo/average"] == pytest.approx(4.0)
    assert bars["this_run:tiny/best mean@4 ≤ 15 s/sc_sdpo/sci"] == pytest.approx(46.0)
    assert (tmp_path / "fig9.png").stat().st_size > 1000


def test_nothing_mapped_gives_an_empty_comparison_that_says_so(evals, fake, tmp_path):
    table = build_main_table(evals, published=(fake, PublishedNames()))
    comparison = main_table_comparison(table, evals, (fake, PublishedNames()))
    assert comparison.empty and not table["method"].str.startswith("paper_").any()
    build_paper_comparison(comparison, fake, tmp_path / "paper_comparison")
    assert "No published number is mapped" in (tmp_path / "paper_comparison.md").read_text()
    fig = fig9_paper_vs_this_run(comparison)
    assert any(t.get_gid() == "note" and "no published numbers" in t.get_text() for ax in fig.axes for t in ax.texts)
