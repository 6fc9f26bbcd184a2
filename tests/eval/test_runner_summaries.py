"""The evaluation runner's per-question records and benchmark summary on hand-made responses whose mean@k, maj@k
and bootstrap maj@k all differ, against values worked out here (bootstrap: verl's recipe written out with loops)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from scsdpo_verl.eval.runner import question_record, summarise_records
from tests.eval.test_majority import brute_force_bootstrap


def doc(question_id: str, gold: str) -> dict:
    return {"question_id": question_id, "data_source": "synthetic_science", "difficulty": 2, "index": 0,
            "ground_truth": gold}


def answers(*letters: str) -> list[str]:
    return [f"so <answer>{letter}</answer>" for letter in letters]


def test_records_and_summary_on_hand_made_samples():
    # q1: gold A; votes B 2, A 2, C 1: the tie goes to B (seen first), so maj = 0 while mean = 2/5
    # q2: gold C; C 4 of 5: maj = 1, mean = 4/5
    first = question_record(doc("q1", "A"), answers("B", "A", "B", "A", "C"))
    second = question_record(doc("q2", "C"), answers("C", "C", "D", "C", "C"))
    assert first["preds"] == ["B", "A", "B", "A", "C"] and first["accs"] == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert (first["mean"], first["maj"]) == (pytest.approx(0.4), 0.0)
    assert (second["mean"], second["maj"]) == (pytest.approx(0.8), 1.0)
    bootstrap = [brute_force_bootstrap(r["preds"], r["accs"], 5) for r in (first, second)]
    assert first["maj_bootstrap"] == pytest.approx(bootstrap[0], abs=1e-12)
    assert second["maj_bootstrap"] == pytest.approx(bootstrap[1], abs=1e-12)

    summary = summarise_records([first, second])
    expected = {"mean@5": 0.6, "maj@5": 0.5, "maj@5_bootstrap": sum(bootstrap) / 2}
    assert summary.keys() == expected.keys()
    for name, value in expected.items():
        assert summary[name] == pytest.approx(value, abs=1e-12), name
    values = sorted(expected.values())  # the three differ, so a swapped name or field shows
    assert min(b - a for a, b in pairwise(values)) > 0.02


def test_summary_refuses_mixed_k_and_no_records():
    record = question_record(doc("q1", "A"), answers("A", "B"))
    with pytest.raises(ValueError, match="different numbers of samples"):
        summarise_records([record, question_record(doc("q2", "A"), answers("A", "B", "C"))])
    with pytest.raises(ValueError, match="no evaluated questions"):
        summarise_records([])
