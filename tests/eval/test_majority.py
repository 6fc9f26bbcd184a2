"""mean@k, exact maj@k and verl's bootstrap maj@k against hand-worked cases and a brute-force version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scsdpo_verl.eval.majority import (
    bootstrap_indices,
    bootstrap_majority_accuracy,
    exact_majority_accuracy,
    mean_accuracy,
)


def brute_force_bootstrap(preds, accs, subset_size, n_bootstrap=1000, seed=42):
    """verl's recipe written out with loops: global numpy seed, one choice() call, dict-ordered vote."""
    np.random.seed(seed)
    draws = np.random.choice(len(preds), size=(n_bootstrap, subset_size), replace=True)
    values = []
    for draw in draws:
        first_acc, counts = {}, {}
        for i in draw:
            vote = preds[i]
            counts[vote] = counts.get(vote, 0) + 1
            first_acc.setdefault(vote, accs[i])
        best = max(counts.values())
        winner = next(v for v in counts if counts[v] == best)
        values.append(first_acc[winner])
    return sum(values) / len(values)


def test_mean_accuracy():
    assert mean_accuracy([1, 0, 0, 1]) == 0.5
    with pytest.raises(ValueError):
        mean_accuracy([])


def test_exact_majority_hand_cases():
    # B wins 3 votes to 2; its first carrier (index 1) is correct
    assert exact_majority_accuracy(["A", "B", "B", "A", "B"], [0, 1, 1, 0, 1]) == 1.0
    # tie A/B: A was seen first and wins, although B is right
    assert exact_majority_accuracy(["A", "B", "B", "A"], [0, 1, 1, 0]) == 0.0
    # the acc of the FIRST carrier is used even when a later one with the same pred scored differently
    assert exact_majority_accuracy(["C", "C", "D"], [0.0, 1.0, 1.0]) == 0.0
    # None votes together with the empty answer
    assert exact_majority_accuracy([None, "", "A"], [0, 0, 1]) == 0.0
    with pytest.raises(ValueError):
        exact_majority_accuracy(["A"], [1, 0])


def test_bootstrap_indices_are_verls_draws():
    np.random.seed(42)
    expected = np.random.choice(16, size=(1000, 16), replace=True)
    np.testing.assert_array_equal(bootstrap_indices(16, 16), expected)


def test_bootstrap_unanimous_and_split():
    assert bootstrap_majority_accuracy(["A"] * 16, [1.0] * 16) == 1.0
    assert bootstrap_majority_accuracy(["A"] * 16, [0.0] * 16) == 0.0
    # 15 right answers and one stray: almost every resample votes right
    preds = ["B"] * 15 + ["Z"]
    accs = [1.0] * 15 + [0.0]
    value = bootstrap_majority_accuracy(preds, accs)
    assert value == pytest.approx(brute_force_bootstrap(preds, accs, 16))
    assert 0.99 < value <= 1.0


def test_bootstrap_matches_brute_force_on_a_tied_case():
    preds = ["A", "B"] * 8
    accs = [1.0, 0.0] * 8
    value = bootstrap_majority_accuracy(preds, accs)
    assert value == pytest.approx(brute_force_bootstrap(preds, accs, 16), abs=1e-12)
    assert 0.3 < value < 0.7  # ties are frequent; the first-seen rule splits them


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans()), min_size=1, max_size=16),
    st.integers(min_value=1, max_value=16),
)
def test_bootstrap_equals_brute_force(responses, subset_size):
    preds = [p for p, _ in responses]
    accs = [float(a) for _, a in responses]
    fast = bootstrap_majority_accuracy(preds, accs, subset_size=subset_size, n_bootstrap=200, seed=7)
    slow = brute_force_bootstrap(preds, accs, subset_size, n_bootstrap=200, seed=7)
    assert fast == pytest.approx(slow, abs=1e-12)
