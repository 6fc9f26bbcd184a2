"""Token-level self-distillation divergences (the SDPO learning signal).

The student is the policy conditioned on the original prompt; the teacher is the (EMA) self-teacher
conditioned on the teacher prompt (original prompt + a successful sibling's answer and/or feedback), both
scoring the student's sampled response tokens. Shapes: B responses, T response positions, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# exp(x - old) is clamped to +-20 in log space before the cap, as in the reference.
_LOG_RATIO_CLAMP = 20.0
# Largest log-mass the top-k may hold before the tail bucket is computed: keeps log(1 - mass) finite.
_MAX_TOPK_LOG_MASS = -1e-7


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs are computed in fp32; fp32/fp64 stay as they are (fp64 for exact tests)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _log1m_exp(log_x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(log_x))`` for ``log_x < 0``, numerically stable on both sides of ``-log 2``."""
    log_x = log_x.clamp(max=_MAX_TOPK_LOG_MASS)
    return torch.where(
        log_x > -math.log(2.0),
        torch.log(-torch.expm1(log_x)),
        torch.log1p(-torch.exp(log_x)),
    )


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``sum_v p_v (log p_v - log q_v)`` over the last dim, for log-distributions with finite entries."""
    return (logp.exp() * (logp - logq)).sum(-1)


def generalized_jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Divergence between two log-distributions over the last dim, returning [..].

    alpha = 0: KL(teacher || student)   ("forward KL", the reference's ``kl_div(student, teacher)``)
    alpha = 1: KL(student || teacher)   ("reverse KL")
    otherwise: (1 - alpha) KL(S || M) + alpha KL(T || M),  M = (1 - alpha) p_S + alpha p_T (mixed in log space).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if alpha == 0.0:
        return _kl(teacher_logp, student_logp)
    if alpha == 1.0:
        return _kl(student_logp, teacher_logp)
    mixture_logp = torch.logsumexp(
        torch.stack([student_logp + math.log(1 - alpha), teacher_logp + math.log(alpha)]), dim=0
    )
    return (1 - alpha) * _kl(student_logp, mixture_logp) + alpha * _kl(teacher_logp, mixture_logp)


def gathered_logprobs(logits: torch.Tensor, indices: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """``log_softmax(logits)`` read at ``indices`` only: ``logits.gather(indices) - logsumexp(logits)``, in fp32.

    The normaliser is over the *full* vocabulary; the [.., V] log-softmax is never materialised. With
    ``chunk_rows`` the leading positions are processed in chunks under activation checkpointing, so at most one
    chunk's fp32 copy of the logits is alive in forward and in backward (long responses x large vocabularies).
    Shapes: logits [.., V], indices [.., k] -> [.., k].
    """
    def compute(chunk_logits: torch.Tensor, chunk_indices: torch.Tensor) -> torch.Tensor:
        chunk_logits = _upcast(chunk_logits)
        return chunk_logits.gather(-1, chunk_indices) - chunk_logits.logsumexp(-1, keepdim=True)

    if chunk_rows is None or logits.dim() != 2 or logits.shape[0] <= chunk_rows:
        return compute(logits, indices)
    from torch.utils.checkpoint import checkpoint

    chunks = [
        checkpoint(compute, logits[i:i + chunk_rows], indices[i:i + chunk_rows], use_reentrant=False)
        if logits.requires_grad else compute(logits[i:i + chunk_rows], indices[i:i + chunk_rows])
        for i in range(0, logits.shape[0], chunk_rows)
    ]
    return torch.cat(chunks)


def topk_divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor, alpha: float, *,
                    add_tail: bool = True) -> torch.Tensor:
    """The reference's divergence on the student's top-k support: [.., k] log-probs (each normalised over the
    full vocabulary, read at the student's top-k indices) -> [..].

    With ``add_tail`` a (k+1)-th bucket ``log(1 - sum_k p)`` holds the rest of each distribution; without it
    the k entries are renormalised. Then ``generalized_jsd`` over the support.
    """
    if add_tail:
        student_logp = torch.cat([student_logp, _log1m_exp(student_logp.logsumexp(-1, keepdim=True))], dim=-1)
        teacher_logp = torch.cat([teacher_logp, _log1m_exp(teacher_logp.logsumexp(-1, keepdim=True))], dim=-1)
    else:
        student_logp = student_logp - student_logp.logsumexp(-1, keepdim=True)
        teacher_logp = teacher_logp - teacher_logp.logsumexp(-1, keepdim=True)
    return generalized_jsd(student_logp, teacher_logp, alpha)


def importance_weights(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, is_clip: float | None
) -> torch.Tensor:
    """Detached truncated importance weight ``min(exp(logp - old_logp), is_clip)`` ([B, T])."""
    log_ratio = (logprobs.detach() - old_logprobs.detach()).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = log_ratio.exp()
    return ratio if is_clip is None else ratio.clamp(max=is_clip)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    count = mask.sum()
    return float((values.detach() * mask).sum() / count) if count > 0 else 0.0


def self_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    alpha: float = 0.5,
    topk: int | None = 100,
    add_tail: bool = True,
    old_logprobs: torch.Tensor | None = None,
    logprobs: torch.Tensor | None = None,
    is_clip: float | None = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token SDPO loss ``l_t = D_alpha(pi_S(.|x, y<t) || pi_T(.|x, f, y<t))`` on the response positions.

    Support: with ``topk`` the k indices are the student's top-k logits; the teacher is read at the same
    indices; both are log-softmaxed over the *full* vocabulary first. With ``add_tail`` a (k+1)-th bucket
    ``log(1 - sum_topk p)`` is appended; without it the top-k is renormalised. ``topk=None`` (or >= V) uses
    the full vocabulary. The divergence is ``generalized_jsd`` (alpha=0.5: JSD) summed over the support.
    The teacher gets no gradient.

    Importance weight: with ``old_logprobs`` (and ``logprobs``, the current log-probs of the sampled tokens,
    both [B, T]) each token's loss is multiplied by ``min(exp(logp - old_logp), is_clip)``, detached.

    Args:
        student_logits, teacher_logits: [B, T, V] (temperature already applied by the caller).
        response_mask: [B, T] bool/0-1; masked positions contribute exactly 0 (loss and gradient).
    Returns:
        per_token_loss [B, T] (fp32, fp64 for fp64 inputs; 0 where masked) and scalar metrics over masked-in tokens.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 3:
        raise ValueError(
            f"student/teacher logits must both be [B, T, V], got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    if response_mask.shape != student_logits.shape[:2]:
        raise ValueError(f"response_mask must be [B, T]={tuple(student_logits.shape[:2])}")
    if (old_logprobs is None) != (logprobs is None):
        raise ValueError("old_logprobs and logprobs must be given together (the IS ratio needs both)")
    mask = response_mask.bool()
    vocab = student_logits.shape[-1]
    student_logits = _upcast(student_logits)
    teacher_logits = _upcast(teacher_logits.detach())

    if topk is None or topk >= vocab:
        divergence = generalized_jsd(torch.log_softmax(student_logits, dim=-1),
                                     torch.log_softmax(teacher_logits, dim=-1), alpha)
    else:
        if topk < 1:
            raise ValueError(f"topk must be >= 1 or None, got {topk}")
        top_idx = student_logits.detach().topk(topk, dim=-1).indices
        divergence = topk_divergence(gathered_logprobs(student_logits, top_idx),
                                     gathered_logprobs(teacher_logits, top_idx), alpha, add_tail=add_tail)

    per_token_loss = divergence
    metrics = {"sd/divergence_mean": _masked_mean(divergence, mask)}
    if old_logprobs is not None:
        is_weight = importance_weights(logprobs, old_logprobs, is_clip)
        per_token_loss = per_token_loss * is_weight
        metrics["sd/is_ratio_mean"] = _masked_mean(is_weight, mask)
        if is_clip is not None:
            metrics["sd/is_clipfrac"] = _masked_mean((is_weight >= is_clip).float(), mask)
    per_token_loss = torch.where(mask, per_token_loss, torch.zeros_like(per_token_loss))
    metrics["sd/num_tokens"] = float(mask.sum())
    return per_token_loss, metrics


def sampled_token_distillation_loss(
    student_logprobs: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    old_logprobs: torch.Tensor | None = None,
    is_clip: float | None = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy-gradient form of SDPO for backends that only see sampled-token log-probs.

    Token advantage ``A_t = log pi_T(y_t) - log pi_S(y_t)`` (detached); ``l_t = -A_t * log pi_S(y_t)``, so
    ``grad l_t = -A_t grad log pi_S(y_t)`` (the reverse-KL gradient estimator on the sampled token). With
    ``old_logprobs`` the loss is multiplied by ``min(exp(logp - old_logp), is_clip)``, detached.

    Args:
        student_logprobs: [B, T] log pi_S(y_t) with gradient; teacher_logprobs: [B, T] (no gradient).
    Returns:
        per_token_loss [B, T] (zero where masked) and metrics.
    """
    if student_logprobs.shape != teacher_logprobs.shape or student_logprobs.shape != response_mask.shape:
        raise ValueError("student_logprobs, teacher_logprobs and response_mask must all be [B, T]")
    mask = response_mask.bool()
    advantage = _upcast(teacher_logprobs.detach() - student_logprobs.detach())
    per_token_loss = -advantage * _upcast(student_logprobs)
    metrics = {"sd/token_advantage_mean": _masked_mean(advantage, mask)}
    if old_logprobs is not None:
        is_weight = importance_weights(student_logprobs, old_logprobs, is_clip)
        per_token_loss = per_token_loss * is_weight
        metrics["sd/is_ratio_mean"] = _masked_mean(is_weight, mask)
    per_token_loss = torch.where(mask, per_token_loss, torch.zeros_like(per_token_loss))
    metrics["sd/num_tokens"] = float(mask.sum())
    return per_token_loss, metrics


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[..., token_ids]`` without materialising the log-softmax: [B, T, V], [B, T] -> [B, T]."""
    logits = _upcast(logits)
    return logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy ``-sum_v p_v log p_v`` ([B, T, V] -> [B, T])."""
    logp = F.log_softmax(_upcast(logits), dim=-1)
    return -(logp.exp() * logp).sum(-1)
