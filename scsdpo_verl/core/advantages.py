"""GRPO's group-relative outcome advantages (the baseline)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from ._groups import check_batch, group_index


def grpo_advantages(
    rewards: torch.Tensor,
    group_ids: Sequence[Hashable],
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages ``A_i = r_i - mean_g(r)`` (optionally ``/ (std_g(r) + eps)``).

    Follows verl's ``compute_grpo_outcome_advantage``: std is the unbiased sample std of the group, and a
    group of one sample has mean 0 and std 1 (so its advantage is its reward). The SDPO reference's GRPO
    baseline runs with ``norm_by_std=False``.

    Args:
        rewards: [B] sequence-level rewards.
        group_ids: B hashables (verl's ``uid``).
    Returns:
        [B] advantages (rewards' floating dtype), no gradient.
    """
    rewards = torch.as_tensor(rewards).detach()
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    check_batch("rewards", rewards, group_ids)
    index, num_groups = group_index(group_ids, rewards.device)
    counts = torch.bincount(index, minlength=num_groups).to(rewards.dtype)
    sums = torch.zeros(num_groups, dtype=rewards.dtype, device=rewards.device).index_add_(0, index, rewards)
    mean = sums / counts
    sq_dev = torch.zeros_like(sums).index_add_(0, index, (rewards - mean[index]) ** 2)
    std = (sq_dev / (counts - 1).clamp_min(1)).sqrt()
    singleton = counts == 1
    mean = torch.where(singleton, torch.zeros_like(mean), mean)
    std = torch.where(singleton, torch.ones_like(std), std)
    advantages = rewards - mean[index]
    if norm_by_std:
        advantages = advantages / (std[index] + eps)
    return advantages


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.28,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate per token: ``max(-A rho, -A clip(rho, 1 - eps_lo, 1 + eps_hi))``.

    ``rho = exp(logp - old_logp)``. Shapes: logprobs, old_logprobs [B, T]; advantages [B, T] or [B, 1].
    Returns (per_token_loss [B, T], clipped [B, T] float: 1 where the clip changed rho). Aggregate with
    ``aggregate_loss``. On-policy (old = current, detached) rho is exactly 1 and the gradient is ``-A grad logp``.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    clipped_ratio = ratio.clamp(1 - clip_ratio_low, 1 + clip_ratio_high)
    per_token_loss = torch.maximum(-advantages * ratio, -advantages * clipped_ratio)
    return per_token_loss, (ratio != clipped_ratio).float()
