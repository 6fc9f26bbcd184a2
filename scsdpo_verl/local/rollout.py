"""Batched sampling with a KV cache, and the teacher-forced forward that scores a response.

Layout used everywhere in the local backend:
    prompt_ids   [B, P]  left-padded (pad, pad, p1, p2, ...), prompt_mask 0 on padding
    response_ids [B, T]  right-padded after the first eos, response_mask 1 on generated tokens (eos included)
so ``cat(prompt_ids, response_ids)`` is one causal sequence whose response starts at column P for every row.

Two savings in ``sample`` leave the samples as they were: a question's n rollouts share one prompt forward, and the
decode steps pass grouped key/value heads to sdpa as they are (``enable_gqa``) instead of copying the whole cache per
layer and token. On the EPYC they changed no bit (README, Benchmarks); ``tests/local/test_rollout.py`` compares them
with a plain sampler (same tokens, log-probs within 1e-6). ``bench/step_time.py`` measures what they save.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask


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


def unique_rows(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)``: ``first [U]`` the index of each distinct (ids, mask) row's first occurrence, in order;
    ``inverse [B]`` the position in ``first`` of each row's twin, so ``prompt_ids[first][inverse] == prompt_ids``."""
    _, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask.long()], dim=1), dim=0, return_inverse=True)
    first_of: dict[int, int] = {}
    for row, group in enumerate(inverse.tolist()):
        first_of.setdefault(group, row)
    first = torch.tensor(sorted(first_of.values()), dtype=torch.long)
    position = {int(inverse[row]): index for index, row in enumerate(first.tolist())}
    return first, torch.tensor([position[group] for group in inverse.tolist()], dtype=torch.long)


GROUPED_KV_SDPA = "scsdpo_sdpa_grouped_kv"


def _sdpa_grouped_kv(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, but grouped key/value heads go to the kernel as they are (``enable_gqa``).

    transformers copies them to one per query head first whenever a mask is given on CPU (``repeat_kv``): while
    decoding, a copy of the whole cache per layer and token. The forward gave the same bits on the EPYC; the
    backward did not (key/value gradients differed by ~1e-7), so only ``sample`` (no gradient) uses it.
    """
    if getattr(module, "num_key_value_groups", 1) == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    is_causal = query.shape[2] > 1 and attention_mask is None and is_causal
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                            dropout_p=kwargs.get("dropout", 0.0), scale=kwargs.get("scaling"),
                                            is_causal=is_causal, enable_gqa=True)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_KV_SDPA, _sdpa_grouped_kv)
ALL_MASK_ATTENTION_FUNCTIONS.register(GROUPED_KV_SDPA, sdpa_mask)  # the masks sdpa gets, unchanged


@contextmanager
def grouped_kv_attention(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, a model that runs transformers' sdpa attention runs ``_sdpa_grouped_kv`` instead."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if previous != "sdpa":  # eager, flash or a test double: left as it is
        yield
        return
    config._attn_implementation = GROUPED_KV_SDPA
    try:
        yield
    finally:
        config._attn_implementation = previous


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
    own prompt length so left padding does not shift RoPE. Identical prompt rows (a question's n rollouts) go
    through the prompt forward once; their cache and last logits are then copied to every twin.
    """
    with grouped_kv_attention(model):
        return _sample(model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                       pad_token_id=pad_token_id, temperature=temperature, top_p=top_p, generator=generator)


def _sample(model, prompt_ids, prompt_mask, *, max_new_tokens, eos_token_id, pad_token_id, temperature, top_p,
            generator) -> Rollout:
    batch = prompt_ids.shape[0]
    stop_ids = torch.tensor(eos_token_id if isinstance(eos_token_id, list | tuple) else [eos_token_id])
    attention = prompt_mask.long()
    positions = position_ids_from_mask(attention)
    first, twin = unique_rows(prompt_ids, attention)
    out = model(input_ids=prompt_ids[first], attention_mask=attention[first], position_ids=positions[first],
                use_cache=True)
    cache, next_logits = out.past_key_values, out.logits[:, -1]
    if len(first) < batch:
        cache.batch_select_indices(twin)
        next_logits = next_logits[twin]
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

