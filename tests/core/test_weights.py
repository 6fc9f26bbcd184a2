"""Pass rates and SC-SDPO weights against hand-worked values and float64 brute force."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scsdpo_verl.core import group_pass_rates, sc_sdpo_weights

N = 8


def _groups_with_successes(successes_per_group: list[int], n: int = N):
    success, ids = [], []
    for g, k in enumerate(successes_per_group):
        success += [1] * k + [0] * (n - k)
        ids += [f"uid-{g}"] * n
    return torch.tensor(success), ids


def test_pass_rates_hand_worked_n8_all_success_counts():
    success, ids = _groups_with_successes(list(range(N + 1)))
    p = group_pass_rates(success, ids)
    expected = torch.tensor([k / N for k in range(N + 1)]).repeat_interleave(N)
    torch.testing.assert_close(p, expected)


def test_pass_rates_interleaved_ids_and_bool_and_unequal_groups():
    success = torch.tensor([True, False, True, True, False])
    ids = ["a", "b", "a", "c", "a"]  # a: 2/3, b: 0/1, c: 1/1
    torch.testing.assert_close(group_pass_rates(success, ids), torch.tensor([2 / 3, 0.0, 2 / 3, 1.0, 2 / 3]))


def test_pass_rates_numpy_object_uids_like_verl():
    ids = np.array(["u1", "u1", "u2", "u2"], dtype=object)
    p = group_pass_rates(torch.tensor([1, 0, 0, 0]), ids)
    torch.testing.assert_close(p, torch.tensor([0.5, 0.5, 0.0, 0.0]))


def test_pass_rates_reject_non_binary_and_shape_mismatch():
    with pytest.raises(ValueError, match="0/1"):
        group_pass_rates(torch.tensor([0.5, 1.0]), ["a", "a"])
    with pytest.raises(ValueError, match="group_ids"):
        group_pass_rates(torch.tensor([1, 0]), ["a"])


def test_raw_weights_hand_worked_n8():
    # sqrt(k/8 (1 - k/8)) for k = 0..8: 0, .3307, .4330, .4841, .5, .4841, .4330, .3307, 0
    success, ids = _groups_with_successes(list(range(N + 1)))
    w = sc_sdpo_weights(group_pass_rates(success, ids), normalize="none")
    per_group = w.view(N + 1, N)[:, 0]
    expected = [0.0, 0.330719, 0.433013, 0.484123, 0.5, 0.484123, 0.433013, 0.330719, 0.0]
    assert per_group.tolist() == pytest.approx(expected, abs=1e-6)


def _brute_force(p, active, exponent, normalize):
    raw = [0.0 if not a else (1.0 if exponent == 0 else (pi * (1 - pi)) ** exponent) for pi, a in zip(p, active)]
    positives = [r for r, a in zip(raw, active) if a and r > 0]
    if normalize == "none":
        return raw
    if not positives:
        return [0.0] * len(raw)
    active_raw = [r for r, a in zip(raw, active) if a]
    z = {
        "batch_mean": sum(active_raw) / len(active_raw),
        "batch_max": max(active_raw),
        "batch_sum": sum(active_raw),
    }[normalize]
    return [r / z for r in raw]


@pytest.mark.parametrize("normalize", ["none", "batch_mean", "batch_max", "batch_sum"])
@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_weights_match_float64_brute_force(normalize, exponent):
    gen = torch.Generator().manual_seed(0)
    p = torch.randint(0, N + 1, (40,), generator=gen).double() / N
    active = torch.rand(40, generator=gen) > 0.3
    got = sc_sdpo_weights(p, exponent=exponent, normalize=normalize, active=active)
    expected = _brute_force(p.tolist(), active.tolist(), exponent, normalize)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_exponent_zero_is_plain_sdpo_whatever_p():
    p = torch.tensor([0.0, 0.25, 1.0, 0.5, 1.0])
    active = torch.tensor([True, True, True, False, True])
    for normalize in ("none", "batch_mean", "batch_max"):
        w = sc_sdpo_weights(p, exponent=0.0, normalize=normalize, active=active)
        assert w.tolist() == [1.0, 1.0, 1.0, 0.0, 1.0]


def test_all_correct_and_all_wrong_groups_give_zero_weights_no_nan():
    for k in (0, N):
        success, ids = _groups_with_successes([k, k, k])
        for normalize in ("none", "batch_mean", "batch_max", "batch_sum"):
            w = sc_sdpo_weights(group_pass_rates(success, ids), normalize=normalize)
            assert torch.isfinite(w).all() and (w == 0).all()


def test_no_active_samples_and_empty_batch():
    w = sc_sdpo_weights(torch.tensor([0.5, 0.25]), active=torch.tensor([False, False]))
    assert w.tolist() == [0.0, 0.0]
    assert sc_sdpo_weights(torch.zeros(0)).shape == (0,)


def test_single_group_batch_mean_weights_are_one():
    success, ids = _groups_with_successes([3])
    w = sc_sdpo_weights(group_pass_rates(success, ids))
    torch.testing.assert_close(w, torch.ones(N))


def test_weights_are_detached():
    p = torch.tensor([0.25, 0.5], requires_grad=True)
    assert not sc_sdpo_weights(p).requires_grad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"normalize": "median"}, "normalize"),
        ({"exponent": -1.0}, "exponent"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sc_sdpo_weights(torch.tensor([0.5]), **kwargs)


def test_pass_rate_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sc_sdpo_weights(torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sc_sdpo_weights(torch.tensor([float("nan")]))


pass_rates = st.lists(st.integers(0, N), min_size=1, max_size=64).map(lambda ks: torch.tensor(ks).double() / N)


@settings(max_examples=200, deadline=None)
@given(p=pass_rates, exponent=st.sampled_from([0.25, 0.5, 1.0, 2.0]), data=st.data())
def test_properties(p, exponent, data):
    active = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p))))
    w = sc_sdpo_weights(p, exponent=exponent, active=active)
    assert torch.isfinite(w).all() and (w >= 0).all()
    # zero at p in {0, 1} and on inactive samples
    assert (w[(p == 0) | (p == 1) | ~active] == 0).all()
    # symmetric under p -> 1 - p
    torch.testing.assert_close(w, sc_sdpo_weights(1 - p, exponent=exponent, active=active))
    # active samples average 1 whenever any has a positive weight
    if (w > 0).any():
        assert math.isclose(float(w[active].mean()), 1.0, rel_tol=1e-9)
    # normalisations agree up to a positive constant
    w_max = sc_sdpo_weights(p, exponent=exponent, normalize="batch_max", active=active)
    if (w > 0).any():
        assert math.isclose(float(w_max.max()), 1.0, rel_tol=1e-9)
        torch.testing.assert_close(w / w.max(), w_max)
