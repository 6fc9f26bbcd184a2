"""Means and 95% confidence intervals across seeds (Student-t), for tables and error bars.

For n values x_1..x_n (one per seed):

  mean = (1/n) sum x_i,   s = sqrt( sum (x_i - mean)^2 / (n-1) ),   half_width = t_{0.975, n-1} * s / sqrt(n)

s is reported too (``Interval.std``): papers print mean ± s over their seeds, we print both.

The interval is [mean - half_width, mean + half_width]; with n = 1 the half width is NaN (no interval).
A difference of two methods uses the seeds both have (paired: the same seed means the same data order
and initial model), d_i = a_i - b_i, and the same formula on d; without common seeds it falls back to
Welch's interval, half_width = t_{0.975, nu} sqrt(s_a^2/n_a + s_b^2/n_b) with Welch-Satterthwaite nu.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """mean +- half_width over n values (half_width NaN when n < 2); std: their standard deviation (n - 1 in the
    denominator; NaN when n < 2, and for Welch's interval of a difference of unpaired samples)."""

    mean: float
    half_width: float
    n: int
    std: float = math.nan

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval of the mean of ``values`` (NaNs dropped)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    std = float(x.std(ddof=1))
    return Interval(float(x.mean()), float(t * std / math.sqrt(n)), n, std)


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """Interval of mean(a) - mean(b) for independent samples (Welch); n reported as min(n_a, n_b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(diff, math.nan, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return Interval(diff, 0.0, min(len(a), len(b)))
    nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + confidence / 2, df=nu)
    return Interval(diff, float(t * math.sqrt(va + vb)), min(len(a), len(b)))


def difference_interval(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> Interval:
    """Interval of a - b from per-seed values ``{seed: value}``: paired over common seeds, else Welch."""
    common = sorted(set(a) & set(b))
    if common:
        return t_interval([a[s] - b[s] for s in common], confidence)
    if not a or not b:
        return Interval(math.nan, math.nan, 0)
    return welch_interval(list(a.values()), list(b.values()), confidence)
