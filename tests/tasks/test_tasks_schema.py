"""verl parquet rows (round trip, validation), compute_score dispatch, load_task_rows."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scsdpo_verl.tasks import TaskDataError, compute_score, load_task_rows, scorer_for
from scsdpo_verl.tasks.schema import read_parquet, validate_row, write_parquet
from scsdpo_verl.tasks.science import score_mcq
from scsdpo_verl.tasks.synthetic import generate
from scsdpo_verl.tasks.tooluse import make_gold, score_tooluse

FIXTURES = Path(__file__).parent / "fixtures"


def _all_kinds_of_rows() -> list[dict]:
    return (generate("synthetic_science", 30, seed=0) + generate("synthetic_tooluse", 30, seed=0)
            + load_task_rows("science", FIXTURES / "sdpo", split="train", domains=["chemistry", "physics"])
            + load_task_rows("tooluse", FIXTURES / "toolalpaca_eval.json", split="test"))


def test_parquet_round_trip_is_exact(tmp_path):
    rows = _all_kinds_of_rows()
    path = write_parquet(rows, tmp_path / "out" / "train.parquet")
    assert read_parquet(path) == rows
    table = pq.read_table(path)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert table.num_rows == len(rows)
    # columns verl reads: nested struct fields keep their types
    assert str(table.schema.field("extra_info").type.field("difficulty").type) == "int64"
    assert str(table.schema.field("prompt").type) == "list<element: struct<role: string, content: string>>"


def test_validate_row_errors_name_row_and_field(tmp_path):
    row = generate("synthetic_science", 1, seed=0)[0]
    validate_row(row)
    cases = [
        (lambda r: r.pop("ability"), "field 'ability': missing"),
        (lambda r: r["extra_info"].pop("question_id"), "field 'extra_info.question_id': missing"),
        (lambda r: r["extra_info"].update(difficulty="3"), "field 'extra_info.difficulty': expected int"),
        (lambda r: r["extra_info"].update(index=True), "field 'extra_info.index'"),
        (lambda r: r["reward_model"].update(style="model"), "field 'reward_model.style'"),
        (lambda r: r["reward_model"].update(ground_truth=""), "field 'reward_model.ground_truth'"),
        (lambda r: r.update(prompt=[]), "field 'prompt'"),
        (lambda r: r["prompt"].append({"role": "assistant", "content": "x"}), "last message"),
        (lambda r: r["prompt"][0].update(role="robot"), r"field 'prompt\[0\]'"),
    ]
    for mutate, message in cases:
        bad = copy.deepcopy(row)
        mutate(bad)
        with pytest.raises(TaskDataError, match=message):
            write_parquet([row, bad], tmp_path / "bad.parquet")
        with pytest.raises(TaskDataError, match=r"bad\.parquet, row 1"):
            write_parquet([row, bad], tmp_path / "bad.parquet")


def test_write_refuses_mixed_extra_info_and_empty(tmp_path):
    row = generate("synthetic_science", 1, seed=0)[0]
    other = copy.deepcopy(row)
    other["extra_info"]["note"] = "x"
    with pytest.raises(TaskDataError, match="keys"):
        write_parquet([row, other], tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="empty"):
        write_parquet([], tmp_path / "x.parquet")
    with pytest.raises(FileNotFoundError):
        read_parquet(tmp_path / "missing.parquet")


@pytest.mark.parametrize(
    ("data_source", "scorer"),
    [("sciknoweval", score_mcq), ("sciknoweval/chemistry", score_mcq), ("synthetic_science", score_mcq),
     ("science", score_mcq), ("tooluse", score_tooluse), ("synthetic_tooluse", score_tooluse),
     ("toolalpaca", score_tooluse)],
)
def test_dispatch(data_source, scorer):
    assert scorer_for(data_source) is scorer


def test_compute_score_contract():
    result = compute_score("sciknoweval/physics", "<answer>B</answer>", "B", {"index": 0}, reward_router_address=None)
    assert result == {"score": 1.0, "acc": True, "pred": "B", "feedback": ""}
    result = compute_score("synthetic_tooluse", "Action: f\nAction Input: {}", make_gold([("g", {})]))
    assert set(result) == {"score", "acc", "pred", "feedback"}
    assert isinstance(result["score"], float) and result["acc"] is False and isinstance(result["pred"], str)
    with pytest.raises(ValueError, match="no scorer"):
        compute_score("gsm8k", "x", "1")


def test_load_task_rows_unknown_task_and_missing_path():
    with pytest.raises(ValueError, match="unknown task"):
        load_task_rows("math")
    with pytest.raises(ValueError, match="needs a path"):
        load_task_rows("tooluse")
    with pytest.raises(ValueError, match="unknown science format"):
        load_task_rows("science", FIXTURES / "sciknoweval_hf.jsonl", format="csv")
