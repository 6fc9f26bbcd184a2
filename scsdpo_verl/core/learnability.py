"""Per-question gradient scale as a function of pass rate p: the paper's learnability analysis.

Model. One question, a group of n rollouts with i.i.d. success ``r_i ~ Bernoulli(p)``, and a policy whose
success logit is theta (p = sigmoid(theta)), so ``d log pi(y_i) / d theta = r_i - p``. A method's
per-question gradient scale is the expected update along theta from one group:

  GRPO (raw)    g = E[(1/n) sum_i A_i (r_i - p)],  A_i = r_i - p_hat        = p(1-p)(n-1)/n
  GRPO (std)    A_i = (r_i - p_hat) / std_hat   -> g = E[sqrt(p_hat(1-p_hat)) sqrt((n-1)/n)]  ~ sqrt(p(1-p))
  SDPO          every sample with a teacher (a successful sibling) gets a unit distillation signal:
                g = E[(1/n) sum_i a_i] = 1 - (1-p)^(n-1)            (flat over questions that get a teacher)
  SC-SDPO       the same signal scaled by w = [p_hat(1-p_hat)]^exponent (unnormalised):
                g = E[(1/n) sum_i a_i w(p_hat)]

(std_hat is the unbiased group std, as in verl; ``a_i`` = sample i has a successful sibling other than
itself.) Normalisation absorbs GRPO's variance term p(1-p) and leaves sqrt(p(1-p)) as the residual scale:
SC-SDPO puts SDPO's flat signal on that same curve. ``closed_form_scale`` evaluates the expectations exactly
over the binomial number of successes; ``monte_carlo_scale`` samples groups and runs the real objectives of
``scsdpo_verl.core`` on them, so the two agreeing checks the theory and the code at once.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .advantages import grpo_advantages
from .teacher import select_demonstrations
from .weights import group_pass_rates, sc_sdpo_weights

Method = Literal["grpo", "grpo_std", "sdpo", "sc_sdpo"]
METHODS: tuple[str, ...] = ("grpo", "grpo_std", "sdpo", "sc_sdpo")


def _binomial_pmf(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def _active_fraction(k: int, n: int) -> float:
    """Share of a group's samples that have a successful sibling other than themselves, given k successes."""
    if k == 0:
        return 0.0
    if k == 1:
        return (n - 1) / n  # the lone success has no other success to learn from
    return 1.0


def closed_form_scale(method: Method, p: float, n: int = 8, *, exponent: float = 0.5) -> float:
    """Exact expected per-question gradient scale (see the module docstring) for pass rate ``p``, group size ``n``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 <= p <= 1.0 or n < 2:
        raise ValueError(f"need p in [0, 1] and n >= 2, got p={p}, n={n}")
    if method == "grpo":
        return p * (1 - p) * (n - 1) / n
    pmf = _binomial_pmf(n, p)
    if method == "grpo_std":
        return sum(pmf[k] * math.sqrt(k / n * (1 - k / n) * (n - 1) / n) for k in range(1, n))
    if method == "sdpo":
        return 1 - (1 - p) ** (n - 1)
    return sum(pmf[k] * _active_fraction(k, n) * (k / n * (1 - k / n)) ** exponent for k in range(1, n))


def monte_carlo_scale(
    method: Method,
    p: float,
    n: int = 8,
    *,
    num_groups: int = 20_000,
    exponent: float = 0.5,
    seed: int = 0,
) -> tuple[float, float]:
    """Monte-Carlo estimate ``(mean, standard error)`` of the same quantity, computed with the core objectives.

    Samples ``num_groups`` groups of n Bernoulli(p) outcomes, then applies ``grpo_advantages``,
    ``select_demonstrations`` and ``sc_sdpo_weights`` (normalize="none") exactly as a training step would.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    generator = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(num_groups * n, generator=generator, dtype=torch.float64) < p).double()
    group_ids = torch.arange(num_groups).repeat_interleave(n).tolist()
    if method in ("grpo", "grpo_std"):
        advantages = grpo_advantages(rewards, group_ids, norm_by_std=method == "grpo_std", eps=0.0)
        advantages = torch.nan_to_num(advantages, nan=0.0)  # 0/0 for all-equal groups: no signal
        per_sample = advantages * (rewards - p)
    else:
        demos = select_demonstrations(group_ids, rewards.bool(), ["y"] * len(group_ids))
        active = torch.tensor([d is not None for d in demos])
        weight_exponent = 0.0 if method == "sdpo" else exponent
        pass_rate = group_pass_rates(rewards, group_ids)
        per_sample = sc_sdpo_weights(pass_rate, exponent=weight_exponent, normalize="none", active=active)
    per_group = per_sample.view(num_groups, n).mean(-1)
    return float(per_group.mean()), float(per_group.std() / math.sqrt(num_groups))


def scale_curve(
    method: Method, pass_rates: torch.Tensor | list[float], n: int = 8, *, exponent: float = 0.5
) -> list[float]:
    """``closed_form_scale`` over a grid of pass rates (for the learnability figure)."""
    return [closed_form_scale(method, float(p), n, exponent=exponent) for p in pass_rates]
