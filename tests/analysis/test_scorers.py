"""The tool-use scorer table on the fixture results (conftest.py: TOOL_GOLD, TOOL_RESPONSES, TOOL_COUNTS)."""

from __future__ import annotations

import pytest

from scsdpo_verl.analysis.scorers import build_scorer_table, rescore_samples

from .conftest import CONFIG


def test_scorer_table_hand_worked(index, results_dir, tmp_path):
    frame = build_scorer_table(CONFIG, index, results_dir, tmp_path / "tooluse_scorers")
    assert set(frame["task"]) == {"tool"}  # the science task has no tool-use scorer
    # every tool evaluation: base (seed 0) + 3 methods x 2 seeds; ablation variants ran on sci only
    assert len(frame) == 7
    assert (frame["scorer"] == "strict").all() and (frame["test_items"] == 4).all()
    assert (frame["gold_disagreements"] == 1).all()
    row = frame[(frame["method"] == "sc_sdpo") & (frame["seed"] == 1)].iloc[0]
    assert (row["questions"], row["responses"], row["items_disagree"], row["responses_disagree"]) == (4, 8, 3, 3)
    assert row["mean_strict"] == pytest.approx(0.625) and row["mean_reference"] == pytest.approx(0.5)
    markdown = (tmp_path / "tooluse_scorers.md").read_text()
    assert "| tool | tiny | SC-SDPO | 1 | 3 / 4 | 3 / 8 | 62.5 | 50.0 |" in markdown
    assert "tool: scored with 'strict'; the strict and the reference scorer disagree on the gold answer of 1 of " \
           "its 4 test items." in markdown


def test_scorer_table_names_missing_inputs(index, results_dir, tmp_path):
    line = (results_dir / "eval/tiny/sci/grpo/seed0/samples.jsonl").read_text().splitlines()[0]
    (tmp_path / "samples.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=r"samples\.jsonl, line 1: field 'responses' missing"):
        rescore_samples(tmp_path / "samples.jsonl")
    config = {**CONFIG, "tasks": {"other": {"kind": "tooluse"}}}
    with pytest.raises(FileNotFoundError, match=r"other/counts\.json: the task data counts of tool-use task other"):
        build_scorer_table(config, index, tmp_path, tmp_path / "t")
