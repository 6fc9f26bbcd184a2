"""Best validation within a budget (the SDPO paper's protocol) on the fixture logs, against hand-worked values.

Fixture (conftest.py): validations at steps 0, 3, 6 with val_at = 0.2 at step 0, then 0.2 + {3: 0.15, 6: 0.10}
+ 0.1 (SC-SDPO) + 0.02 x seed; step time 2 + seed seconds, so the cumulative step time at step s is s (2 + seed):
seed 0 reaches step 3 at 6 s and step 6 at 12 s, seed 1 at 9 s and 18 s.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scsdpo_verl.analysis.budgets import Budget, best_within_budgets, budget_metric, budgets_from_config
from scsdpo_verl.analysis.tables import build_ablation_table, build_main_table

from .test_tables import T1, cell

BUDGETS = [Budget("seconds", 8), Budget("seconds", 15), Budget("steps", 2)]


def one(frame: pd.DataFrame, **keys) -> pd.Series:
    return cell(frame, **keys)


def test_budget_labels_and_config():
    assert [b.label for b in BUDGETS] == ["8 s", "15 s", "2 steps"]
    assert budget_metric(16, Budget("hours", 5)) == "best mean@16 ≤ 5 h" and Budget("hours", 1).limit == 3600
    assert [b.label for b in budgets_from_config({})] == ["1 h", "5 h"]  # the SDPO paper's, by default
    assert [b.label for b in budgets_from_config({"reporting": {"budgets": {"unit": "steps", "values": [4, 8]}}})] \
        == ["4 steps", "8 steps"]
    with pytest.raises(ValueError, match=r"reporting\.budgets\.unit: 'days'"):
        Budget("days", 1)


def test_best_within_budget_hand_worked(training):
    best = best_within_budgets(training, BUDGETS)
    sc = best[(best["method"] == "sc_sdpo") & (best["task"] == "sci")]
    # 8 s: seed 0 has validations at 0 s and 6 s (best: step 3, 0.45); seed 1 only at 0 s (step 3 is at 9 s)
    s8 = sc[sc["budget"] == "8 s"].set_index("seed")
    assert s8["value"].to_dict() == pytest.approx({0: 0.45, 1: 0.2})
    assert s8["best_step"].to_dict() == {0: 3, 1: 0} and s8["reached"].all()
    assert set(s8["metric"]) == {"best mean@4 ≤ 8 s"} and set(s8["k"]) == {4}
    # 15 s: seed 0's run ends at 12 s (not reached: its best over the whole run, step 3); seed 1: steps 0, 3
    s15 = sc[sc["budget"] == "15 s"].set_index("seed")
    assert s15["value"].to_dict() == pytest.approx({0: 0.45, 1: 0.47})
    assert s15["reached"].to_dict() == {0: False, 1: True}
    # the best is not the last validation (0.40 / 0.42 at step 6)
    assert s15["best_step"].to_dict() == {0: 3, 1: 3}
    # 2 steps: only the validation before training counts
    assert sc[sc["budget"] == "2 steps"]["value"].tolist() == pytest.approx([0.2, 0.2])
    # a validation exactly at the budget counts: step 3 of seed 0 is at 6.0 s; step 3 is within 3 steps
    edge = best_within_budgets(training, [Budget("seconds", 6), Budget("steps", 3)])
    edge = edge[(edge["method"] == "sc_sdpo") & (edge["task"] == "sci")].set_index(["budget", "seed"])["value"]
    assert edge.to_dict() == pytest.approx({("6 s", 0): 0.45, ("6 s", 1): 0.2, ("3 steps", 0): 0.45,
                                            ("3 steps", 1): 0.47})


def test_main_table_has_budget_columns_next_to_final(evals, training, tmp_path):
    table = build_main_table(evals, tmp_path / "main_table", budgets=best_within_budgets(training, BUDGETS))
    row = one(table, method="sc_sdpo", benchmark="sci", metric="best mean@4 ≤ 8 s")
    assert row["mean"] == pytest.approx((0.45 + 0.2) / 2) and row["half_width"] == pytest.approx(T1 * 0.125)
    assert row["std"] == pytest.approx(0.125 * math.sqrt(2)) and not row["budget_not_reached"]
    short = one(table, method="sc_sdpo", benchmark="sci", metric="best mean@4 ≤ 15 s")
    assert short["mean"] == pytest.approx(0.46) and short["budget_not_reached"]
    # Δ SC-SDPO − SDPO within 15 s: SDPO seed 0 0.35, seed 1 0.37 -> differences 0.1, 0.1
    delta = one(table, method="delta_sc_sdpo_minus_sdpo", benchmark="sci", metric="best mean@4 ≤ 15 s")
    assert delta["mean"] == pytest.approx(0.1) and delta["half_width"] == pytest.approx(0) and \
        delta["budget_not_reached"]
    # average over sci and tool, per seed: seed 0 (0.45 + 0.45) / 2, seed 1 (0.2 + 0.2) / 2 within 8 s
    assert one(table, method="sc_sdpo", benchmark="average", metric="best mean@4 ≤ 8 s")["mean"] == \
        pytest.approx(0.325)
    # the base model has no training log: no budget cell
    assert table[(table["method"] == "base") & table["metric"].str.startswith("best")].empty
    markdown = (tmp_path / "main_table.md").read_text()
    header = markdown.splitlines()[2]
    assert ("| sci final mean@16 | sci final maj@16 | sci best mean@4 ≤ 8 s | sci best mean@4 ≤ 15 s | "
            "sci best mean@4 ≤ 2 steps | tool final mean@16") in header
    sc_line = next(line for line in markdown.splitlines() if line.startswith("| tiny | SC-SDPO |"))
    assert "| 32.5 ± 158.8 (sd 17.7) | 46.0 ± 12.7 (sd 1.4)* | 20.0 ± 0.0 (sd 0.0) |" in sc_line
    assert "best mean@4 ≤ 8 s, best mean@4 ≤ 15 s, best mean@4 ≤ 2 steps: per run, the highest validation" in \
        " ".join(markdown.split())
    assert r"$\leq$" in (tmp_path / "main_table.tex").read_text()


def test_ablation_table_has_budget_columns(evals, training):
    table = build_ablation_table(evals, budgets=best_within_budgets(training, BUDGETS))
    # exponent 1 (key sc_sdpo_exp1: val_at gives it no SC-SDPO bonus): 0.35 / 0.37 within 15 s, seed 0 short
    row = one(table, label="exponent 1, batch_mean", benchmark="sci", metric="best mean@4 ≤ 15 s")
    assert row["mean"] == pytest.approx(0.36) and row["budget_not_reached"]
    sdpo = one(table, label="exponent 0 (SDPO)", benchmark="sci", metric="best mean@4 ≤ 8 s")
    assert sdpo["mean"] == pytest.approx((0.35 + 0.2) / 2) and not sdpo["budget_not_reached"]


def test_time_budget_needs_the_cumulative_step_time(training):
    old = training.drop(columns=["timing_s/step_cumulative"])
    with pytest.raises(ValueError, match=r"run tiny/sci/grpo/seed0: no 'timing_s/step_cumulative' in its metrics"):
        best_within_budgets(old, [Budget("hours", 1)])
    assert len(best_within_budgets(old, [Budget("steps", 3)])) == len(old.groupby(["task", "method", "seed"]))
