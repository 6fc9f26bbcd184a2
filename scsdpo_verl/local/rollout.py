"""Batched sampling with a KV cache, and the teacher-forced forward that scores a response.

Layout used everywhere in the local backend:
    prompt_ids   [B, P]  left-padded (pad, pad, p1, p2, ...), prompt_mask 0 on padding
    response_ids [B, T]  right-padded after the first eos, response_mask 1 on generated tokens (eos included)
so ``cat(prompt_ids, response_ids)`` is one causal sequence whose response starts at column P for every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # [B, P] long, left-padded
    prompt_mask: torch.Tensor  # [B, P] long
    response_ids: torch.Tensor  # [B, T] long, pad after eos
    response_mask: torch.Tensor  # [B, T] float, 1 on generated tokens up to and including eos
    logprobs: torch.Tensor  # [B, T] float, log pi(y_t) of the sampling distribution (before top-p), 0 off-mask


def left_pad(sequences: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into ``ids [B, P]`` and ``mask [B, P]`` with padding on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token: ``cumsum(mask) - 1`` clamped at 0."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def sample_next_token(logits: torch.Tensor, temperature: float, top_p: float,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row from ``softmax(logits / temperature)`` restricted to the top-p nucleus.

    temperature == 0 means greedy. Returns ``(token [B], logprob [B])`` where logprob is the token's
    log-probability under ``softmax(logits / temperature)`` (the policy the trainer scores, as in verl).
    """
    if temperature == 0:
        token = logits.argmax(-1)
        return token, torch.zeros_like(token, dtype=logits.dtype)
    logprobs = F.log_softmax(logits.float() / temperature, dim=-1)
    probs = logprobs.exp()
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass strictly before it already reaches top_p (the first token always stays)
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return token, logprobs.gather(-1, token[:, None]).squeeze(-1)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Autoregressive sampling with the model's KV cache; a row stops at its first ``eos_token_id`` (one id or
    several, e.g. a chat model's end-of-turn and end-of-text).

    Each step feeds only the newest token with ``past_key_values``; positions continue from each row's
    own prompt length so left padding does not shift RoPE.
    """
    batch = prompt_ids.shape[0]
    stop_ids = torch.tensor(eos_token_id if isinstance(eos_token_id, list | tuple) else [eos_token_id])
    attention = prompt_mask.long()
    positions = position_ids_from_mask(attention)
    out = model(input_ids=prompt_ids, attention_mask=attention, position_ids=positions, use_cache=True)
    cache, next_logits = out.past_key_values, out.logits[:, -1]
    next_position = positions[:, -1:] + 1

    tokens, logprobs, alive = [], [], []
    finished = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_new_tokens):
        token, logprob = sample_next_token(next_logits, temperature, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        alive.append(~finished)
        tokens.append(token)
        logprobs.append(logprob)
        finished = finished | torch.isin(token, stop_ids)
        if bool(finished.all()) or len(tokens) == max_new_tokens:  # the last token needs no forward of its own
            break
        attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention, position_ids=next_position,
                    past_key_values=cache, use_cache=True)
        cache, next_logits = out.past_key_values, out.logits[:, -1]
        next_position = next_position + 1

    response_mask = torch.stack(alive, dim=1).float()
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=torch.stack(tokens, dim=1),
        response_mask=response_mask,
        logprobs=torch.stack(logprobs, dim=1).float() * response_mask,
    )


def response_logits(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Teacher-forced logits that predict each response token: ``[B, T, V]``, divided by temperature.

    The sequence is ``cat(prompt, response)``; the logit at column P-1+t predicts response token t, so
    only the last T+1 positions go through the LM head (``logits_to_keep``), which keeps long teacher
    prompts cheap.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
    # padding after eos stays attendable: it only follows real tokens and is masked out of every loss
    attention[:, prompt_ids.shape[1]:] = 1
    positions = position_ids_from_mask(attention)
    steps = response_ids.shape[1]
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                   logits_to_keep=steps + 1).logits[:, :-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32, or fp64 for fp64 models (tests)
    return logits / temperature if temperature != 1.0 else logits

