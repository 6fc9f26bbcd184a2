"""Per-question pass rates and the SC-SDPO weights.

SC-SDPO (arXiv 2605.27765) weights each question's SDPO loss by ``[p(1-p)]^(1/2)`` where ``p`` is the
question's pass rate over its group of on-policy rollouts, with a batch-adaptive normalisation. The
paper's exact normaliser is not public; ``batch_mean`` (active samples average 1, so the step size stays
comparable to SDPO) is our default and the alternatives are ablation knobs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from ._groups import check_batch, group_index

Normalize = Literal["none", "batch_mean", "batch_max", "batch_sum"]
NORMALIZE_MODES: tuple[str, ...] = ("none", "batch_mean", "batch_max", "batch_sum")


def group_pass_rates(success: torch.Tensor, group_ids: Sequence[Hashable]) -> torch.Tensor:
    """Per-sample pass rate of its group: ``p_i = mean_{j in g(i)} success_j``.

    Args:
        success: [B] bool or 0/1 tensor (a reward >= threshold, decided by the caller).
        group_ids: B hashables; samples with equal ids form one group (verl's ``uid``).
    Returns:
        [B] float tensor (float32, or success's dtype when it is floating point), no gradient.
    """
    success = torch.as_tensor(success)
    check_batch("success", success, group_ids)
    dtype = success.dtype if success.is_floating_point() else torch.float32
    values = success.detach().to(dtype)
    if values.numel() and ((values != 0) & (values != 1)).any():
        raise ValueError("success must be boolean or 0/1; threshold rewards before calling group_pass_rates")
    index, num_groups = group_index(group_ids, values.device)
    successes = torch.zeros(num_groups, dtype=dtype, device=values.device).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=num_groups).to(dtype)
    return (successes / counts.clamp_min(1))[index]


def sc_sdpo_weights(
    pass_rate: torch.Tensor,
    *,
    exponent: float = 0.5,
    normalize: Normalize = "batch_mean",
    active: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """SC-SDPO per-sample weights ``w_i = [p_i (1 - p_i)]^exponent / Z``, detached.

    ``exponent=0.5`` is SC-SDPO; ``exponent=0`` is plain SDPO (weight 1 on every active sample, whatever p);
    ``exponent=1`` mimics GRPO without std normalisation. Samples with ``active=False`` (no teacher) get 0.

    Normaliser Z over the active samples:
      none        Z = 1
      batch_mean  Z = mean_active(raw)   -> active weights average 1
      batch_max   Z = max_active(raw)    -> the largest weight is 1
      batch_sum   Z = sum_active(raw)    -> weights sum to 1
    If no active sample has a positive raw weight, every weight is 0 (the step carries no SDPO signal).
    Never NaN or inf.

    Args:
        pass_rate: [B] values in [0, 1].
        active: [B] bool, default all True.
    Returns:
        [B] tensor of pass_rate's floating dtype.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    if exponent < 0:
        raise ValueError(f"exponent must be >= 0, got {exponent}")
    p = torch.as_tensor(pass_rate).detach()
    p = p if p.is_floating_point() else p.float()
    if p.dim() != 1:
        raise ValueError(f"pass_rate must have shape [B], got {tuple(p.shape)}")
    if p.numel() and (torch.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise ValueError("pass_rate must lie in [0, 1]")
    if active is None:
        active = torch.ones_like(p, dtype=torch.bool)
    active = torch.as_tensor(active, device=p.device).bool()
    if active.shape != p.shape:
        raise ValueError(f"active has shape {tuple(active.shape)}, pass_rate {tuple(p.shape)}")

    if exponent == 0:  # plain SDPO: flat over questions with a teacher (also avoids 0**0 conventions)
        raw = torch.ones_like(p)
    else:
        raw = (p * (1 - p)).clamp_min(0) ** exponent
    raw = torch.where(active, raw, torch.zeros_like(raw))

    if normalize == "none":
        return raw
    if not (raw > 0).any():
        return torch.zeros_like(raw)
    if normalize == "batch_mean":
        z = raw.sum() / active.sum()
    elif normalize == "batch_max":
        z = raw.max()
    else:  # batch_sum
        z = raw.sum()
    return raw / z.clamp_min(eps)
