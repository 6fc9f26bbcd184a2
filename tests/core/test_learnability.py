"""The learnability analysis: closed forms against Monte Carlo over the real objectives, and known limits."""

import math

import pytest

from scsdpo_verl.core import closed_form_scale, monte_carlo_scale, scale_curve


@pytest.mark.parametrize("method", ["grpo", "grpo_std", "sdpo", "sc_sdpo"])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8, 1.0])
def test_closed_form_agrees_with_monte_carlo(method, p):
    mean, stderr = monte_carlo_scale(method, p, n=8, num_groups=4000, seed=1)
    exact = closed_form_scale(method, p, n=8)
    assert abs(mean - exact) <= 4 * stderr + 1e-9, (mean, exact, stderr)


def test_closed_forms_by_hand():
    n = 8
    assert closed_form_scale("grpo", 0.5, n) == pytest.approx(0.25 * 7 / 8)
    assert closed_form_scale("sdpo", 0.5, n) == pytest.approx(1 - 0.5**7)
    # p = 1: every sample distils from a sibling under SDPO; SC-SDPO and GRPO give nothing
    assert closed_form_scale("sdpo", 1.0, n) == 1.0
    assert closed_form_scale("sc_sdpo", 1.0, n) == 0.0
    assert closed_form_scale("grpo_std", 0.0, n) == 0.0
    # exponent 0 turns SC-SDPO into SDPO on the mixed groups (k = 1..n-1)
    mixed_sdpo = closed_form_scale("sdpo", 0.3, n) - 0.3**n
    assert closed_form_scale("sc_sdpo", 0.3, n, exponent=0.0) == pytest.approx(mixed_sdpo)


def test_normalisation_leaves_sqrt_pq_as_residual_scale():
    # for large n, std-normalised GRPO -> sqrt(p(1-p)) and raw GRPO -> p(1-p)
    for p in (0.2, 0.5, 0.7):
        assert closed_form_scale("grpo_std", p, n=400) == pytest.approx(math.sqrt(p * (1 - p)), rel=0.01)
        assert closed_form_scale("grpo", p, n=400) == pytest.approx(p * (1 - p), rel=0.01)


def test_symmetry_and_peak():
    curve = scale_curve("sc_sdpo", [i / 20 for i in range(21)])
    assert max(range(21), key=lambda i: curve[i]) == 10
    for method in ("grpo", "grpo_std"):
        assert closed_form_scale(method, 0.2) == pytest.approx(closed_form_scale(method, 0.8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        closed_form_scale("ppo", 0.5)
    with pytest.raises(ValueError):
        closed_form_scale("grpo", 1.5)
