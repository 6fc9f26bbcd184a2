"""Confidence intervals against hand-computed values;
t quantiles from tables: t_.975,1 = 12.7062, t_.975,2 = 4.3027."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from scsdpo_verl.analysis.stats import difference_interval, t_interval, welch_interval

T_975_DF1 = 12.706204736
T_975_DF2 = 4.302652730


def test_t_interval_two_values():
    interval = t_interval([0.5, 0.7])
    assert interval.mean == pytest.approx(0.6)
    # s = 0.1414, s / sqrt(2) = 0.1
    assert interval.half_width == pytest.approx(T_975_DF1 * 0.1)
    assert (interval.low, interval.high, interval.n) == pytest.approx((0.6 - 1.27062047, 0.6 + 1.27062047, 2))


def test_t_interval_three_values_and_edge_cases():
    interval = t_interval([1.0, 2.0, 3.0])  # s = 1
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(T_975_DF2 / math.sqrt(3))
    single = t_interval([0.4])
    assert single.mean == 0.4 and math.isnan(single.half_width) and single.n == 1
    assert t_interval([float("nan"), 0.2, 0.2]).half_width == 0.0  # NaN dropped; equal values: zero width
    assert t_interval([]).n == 0


def test_paired_difference_uses_common_seeds():
    a = {0: 0.5, 1: 0.7, 2: 0.9}
    b = {0: 0.4, 1: 0.5}  # seed 2 has no partner
    interval = difference_interval(a, b)  # d = 0.1, 0.2
    assert interval.mean == pytest.approx(0.15) and interval.n == 2
    assert interval.half_width == pytest.approx(T_975_DF1 * 0.05)


def test_welch_when_no_seed_is_shared():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0]
    # var_a/n_a = 1/3, var_b/n_b = 1; nu = (4/3)^2 / ((1/3)^2/2 + 1) = 32/19
    expected = scipy_stats.t.ppf(0.975, 32 / 19) * math.sqrt(4 / 3)
    assert welch_interval(a, b).half_width == pytest.approx(expected)
    assert welch_interval(a, b).mean == pytest.approx(-1.0)
    assert difference_interval({0: 1.0, 1: 2.0, 2: 3.0}, {5: 2.0, 6: 4.0}).half_width == pytest.approx(expected)
