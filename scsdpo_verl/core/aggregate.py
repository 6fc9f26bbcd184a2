"""Reduce a per-token loss matrix to the scalar that is differentiated."""

from __future__ import annotations

from typing import Literal

import torch

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    *,
    sample_weight: torch.Tensor | None = None,
    mode: AggMode = "token-mean",
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar loss from ``per_token_loss`` [B, T] under ``mask`` [B, T], each sample's tokens scaled by ``w_i``.

    With ``l'_it = w_i * l_it`` (w = 1 when ``sample_weight`` is None) and S = samples with >= 1 masked-in token:
      token-mean           sum_it m_it l'_it / sum_it m_it
      seq-mean-token-mean  (1/|S|) sum_{i in S} (sum_t m_it l'_it / sum_t m_it)
      seq-mean-token-sum   (1/|S|) sum_{i in S}  sum_t m_it l'_it
    These match verl's ``agg_loss`` on one data-parallel rank (fully masked sequences are excluded from the
    denominator), so the verl plugin can multiply the weights in and call ``agg_loss`` with the same result.
    The weight does not enter the denominators: with ``batch_mean`` SC weights (mean 1 over active samples)
    the loss scale stays SDPO's. An empty mask gives 0 (connected to the graph), never NaN.

    ``normalizer`` replaces the denominator (sum_it m_it, or |S|) with one computed over a larger batch by
    ``loss_normalizer``: with it, the losses of micro-batches sum to the loss of the whole batch, so gradient
    accumulation reproduces the full-batch gradient.

    The SDPO reference effectively ran seq-mean-token-mean with samples without a teacher counted as zeros in
    the denominator; reproduce that with ``mask=response_mask`` and ``sample_weight=w * has_teacher``.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"mode must be one of {AGG_MODES}, got {mode!r}")
    if per_token_loss.shape != mask.shape or per_token_loss.dim() != 2:
        raise ValueError(f"per_token_loss and mask must both be [B, T], got {tuple(per_token_loss.shape)}, "
                         f"{tuple(mask.shape)}")
    mask = mask.to(per_token_loss.dtype)
    # torch.where keeps masked positions out of the graph even if they hold inf/NaN garbage
    loss = torch.where(mask > 0, per_token_loss, torch.zeros_like(per_token_loss))
    if sample_weight is not None:
        if sample_weight.shape != per_token_loss.shape[:1]:
            raise ValueError(f"sample_weight must be [B]={per_token_loss.shape[0]}, got {tuple(sample_weight.shape)}")
        loss = loss * sample_weight.detach().to(loss.dtype).unsqueeze(-1)
    tokens_per_seq = mask.sum(-1)
    denominator = loss_normalizer(mask, mode) if normalizer is None else normalizer
    if mode == "token-mean":
        return loss.sum() / denominator
    seq_loss = loss.sum(-1)
    if mode == "seq-mean-token-mean":
        seq_loss = seq_loss / tokens_per_seq.clamp_min(1)
    return seq_loss.sum() / denominator


def loss_normalizer(mask: torch.Tensor, mode: AggMode = "token-mean") -> torch.Tensor:
    """The denominator ``aggregate_loss`` divides by, for ``mask`` [B, T]: the number of masked-in tokens
    (token-mean) or of sequences with >= 1 such token (seq-mean-*); at least 1. Scalar tensor."""
    if mode not in AGG_MODES:
        raise ValueError(f"mode must be one of {AGG_MODES}, got {mode!r}")
    count = mask.sum() if mode == "token-mean" else (mask.sum(-1) > 0).sum()
    return count.to(torch.promote_types(mask.dtype, torch.float32)).clamp_min(1)
