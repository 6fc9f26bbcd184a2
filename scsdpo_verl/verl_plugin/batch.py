"""Pure batch logic of the SDPO / SC-SDPO trainer step (no Ray, no TransferQueue, no tokenizer).

Each function takes plain tensors / lists as the verl v1 trainer holds them (one row per rollout, jagged
prompt and response token ids, ``uid`` per question) so it can be tested on a CPU fixture. The formulas
all come from ``scsdpo_verl.core``; this module only gathers inputs and lays out rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scsdpo_verl.core import build_teacher_prompts, group_pass_rates, sc_sdpo_weights, select_demonstrations

Message = dict[str, Any]


@dataclass
class SelfDistillationPlan:
    """What the teacher sees and how much each sample counts (all per sample, B rows).

    Attributes:
        success: [B] bool, ``score_i >= threshold``.
        pass_rate: [B] float, the group pass rate ``p_uid(i)``.
        has_teacher: [B] bool, the self-distillation mask (a demonstration or feedback exists).
        weight: [B] float, SC weight ``w_i`` (0 where ``has_teacher`` is False; 1 for SDPO).
        teacher_messages: B chat message lists: the student's messages with the last user message replaced
            by the teacher prompt (unchanged where ``has_teacher`` is False).
    """

    success: torch.Tensor
    pass_rate: torch.Tensor
    has_teacher: torch.Tensor
    weight: torch.Tensor
    teacher_messages: list[list[Message]]


def sequence_scores(token_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Summed reward per rollout: verl's ``rm_scores`` rows ([T_i] each) -> [B] float32."""
    return torch.stack([row.float().sum() for row in token_scores]) if len(token_scores) else torch.zeros(0)


def last_user_message_index(messages: Sequence[Message], row: int) -> int:
    """Index of the last ``role == 'user'`` message; raises naming the row when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    raise ValueError(f"raw_prompt row {row}: no message with role 'user' (set data.return_raw_chat=true)")


def message_text(content: Any, row: int) -> str:
    """Text of a message's content (a string, or a list of ``{'type': 'text', 'text': ...}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(part["text"] for part in content)
    raise ValueError(f"raw_prompt row {row}: field 'content' of the last user message must be text only")


def replace_last_user_text(messages: Sequence[Message], text: str, row: int) -> list[Message]:
    """A copy of ``messages`` whose last user message says ``text`` (system and earlier turns kept)."""
    index = last_user_message_index(messages, row)
    out = [dict(m) for m in messages]
    out[index]["content"] = text
    return out


def plan_self_distillation(
    uids: Sequence[Hashable],
    scores: torch.Tensor,
    messages: Sequence[Sequence[Message]],
    response_texts: Sequence[str],
    *,
    success_threshold: float,
    weight_exponent: float,
    weight_normalize: str,
    exclude_self: bool = True,
    strip_thinking: bool = True,
    feedbacks: Sequence[str | None] | None = None,
    include_feedback: bool = False,
) -> SelfDistillationPlan:
    """One step's self-distillation plan from the rollouts of a batch.

    1. ``success_i = score_i >= threshold``; ``p_i = mean_{j: uid_j = uid_i} success_j`` (core).
    2. demonstration of i = first successful sibling (never itself with ``exclude_self``), thinking stripped.
    3. teacher user message = core's template(prompt, demonstration[, feedback]); ``has_teacher`` from core.
    4. ``w_i = [p_i (1 - p_i)]^exponent / Z`` over samples with a teacher (core); exponent 0 is SDPO.

    Shapes: uids, messages, response_texts length B; scores [B].
    """
    batch = len(uids)
    if scores.shape != (batch,) or len(messages) != batch or len(response_texts) != batch:
        raise ValueError(
            f"plan_self_distillation: uids ({batch}), scores {tuple(scores.shape)}, messages ({len(messages)}) "
            f"and response_texts ({len(response_texts)}) must all have B rows"
        )
    success = scores >= success_threshold
    pass_rate = group_pass_rates(success, list(uids))
    demonstrations = select_demonstrations(
        list(uids), success, list(response_texts), exclude_self=exclude_self, strip_thinking=strip_thinking
    )
    prompts = [
        message_text(rows[last_user_message_index(rows, i)].get("content"), i) for i, rows in enumerate(messages)
    ]
    teacher_texts, has_teacher = build_teacher_prompts(
        prompts, demonstrations, feedbacks, include_feedback=include_feedback
    )
    weight = sc_sdpo_weights(pass_rate, exponent=weight_exponent, normalize=weight_normalize, active=has_teacher)
    teacher_messages = [
        replace_last_user_text(rows, text, i) if active else [dict(m) for m in rows]
        for i, (rows, text, active) in enumerate(zip(messages, teacher_texts, has_teacher.tolist(), strict=True))
    ]
    return SelfDistillationPlan(success, pass_rate, has_teacher, weight, teacher_messages)


def truncate_prompt(token_ids: Sequence[int], max_length: int, side: str) -> list[int]:
    """Keep at most ``max_length`` tokens, cutting from ``side`` ('right' as the reference, or 'left')."""
    ids = list(token_ids)
    if len(ids) <= max_length:
        return ids
    if side == "right":
        return ids[:max_length]
    if side == "left":
        return ids[len(ids) - max_length :]
    raise ValueError(f"truncation side must be 'left' or 'right', got {side!r}")


def encode_teacher_prompts(
    teacher_messages: Sequence[Sequence[Message]],
    encode_messages: Callable[[Sequence[Message]], Sequence[int]],
    *,
    max_length: int,
    side: str,
) -> tuple[list[list[int]], torch.Tensor]:
    """Tokenised teacher prompts (chat template + generation prompt, via ``encode_messages``), truncated.

    Returns the B id lists and a [B] bool tensor saying which rows were truncated.
    """
    encoded = [list(encode_messages(rows)) for rows in teacher_messages]
    truncated = torch.tensor([len(ids) > max_length for ids in encoded], dtype=torch.bool)
    return [truncate_prompt(ids, max_length, side) for ids in encoded], truncated


def build_teacher_rows(
    teacher_prompt_ids: Sequence[Sequence[int]], responses: Sequence[torch.Tensor]
) -> dict[str, list[torch.Tensor]]:
    """Teacher input rows in the layout verl's agent loop writes for a rollout (jagged, text only).

    Row i: ``input_ids = teacher_prompt_i ⊕ response_i`` (the student's own sampled tokens),
    ``attention_mask = 1``, ``position_ids = 0..L_i-1``, ``prompts``/``responses`` the two parts and
    ``response_mask``/``loss_mask = 1`` over the response. A forward pass over these rows followed by verl's
    ``response_from_nested`` gives the teacher's log-probs at exactly the student's response positions.
    """
    if len(teacher_prompt_ids) != len(responses):
        raise ValueError(f"build_teacher_rows: {len(teacher_prompt_ids)} prompts but {len(responses)} responses")
    rows: dict[str, list[torch.Tensor]] = {
        key: [] for key in ("prompts", "responses", "input_ids", "attention_mask", "position_ids", "response_mask")
    }
    for i, (prompt_ids, response) in enumerate(zip(teacher_prompt_ids, responses, strict=True)):
        if len(prompt_ids) == 0:
            raise ValueError(f"build_teacher_rows: row {i} has an empty teacher prompt")
        prompt = torch.as_tensor(list(prompt_ids), dtype=torch.int64)
        response = response.to(torch.int64).reshape(-1)
        input_ids = torch.cat([prompt, response])
        rows["prompts"].append(prompt)
        rows["responses"].append(response)
        rows["input_ids"].append(input_ids)
        rows["attention_mask"].append(torch.ones_like(input_ids))
        rows["position_ids"].append(torch.arange(input_ids.numel(), dtype=torch.int64))
        rows["response_mask"].append(torch.ones_like(response))
    rows["loss_mask"] = [mask.clone() for mask in rows["response_mask"]]
    return rows


def response_log_probs(sequence_log_probs: torch.Tensor, sequence_length: int, response_length: int) -> torch.Tensor:
    """Response-aligned slice of one row's per-position log-probs (verl's shift-by-one convention).

    ``sequence_log_probs[t]`` scores token ``t + 1``, so the response tokens (the last ``response_length``
    of ``sequence_length``) are scored by positions ``[L - R - 1, L - 1)``. Shapes: [L] -> [R].
    """
    start = sequence_length - response_length - 1
    if start < 0:
        raise ValueError(f"a row of length {sequence_length} cannot hold a response of {response_length} + a prompt")
    return sequence_log_probs[start : sequence_length - 1]


def broadcast_per_sample(values: torch.Tensor, response_lengths: Sequence[int]) -> list[torch.Tensor]:
    """Per-sample values [B] repeated over each response's tokens (how verl stores per-token fields)."""
    if values.shape != (len(response_lengths),):
        raise ValueError(f"broadcast_per_sample: values {tuple(values.shape)} vs {len(response_lengths)} rows")
    return [values[i].float().expand(int(n)).clone() for i, n in enumerate(response_lengths)]


def plan_metrics(plan: SelfDistillationPlan, truncated: torch.Tensor, uids: Sequence[Hashable] | None = None,
                 padding: torch.Tensor | None = None) -> dict[str, float]:
    """Step metrics of a plan: ``sd/*``, and with ``uids`` the local backend's ``sc/*`` names (pass-rate histogram:
    ``sc/pass_rate_hist/k`` = questions with k successes among their n rollouts, verl's ``padding`` rows left
    out; SC weight statistics)."""
    active = plan.has_teacher
    metrics = {
        "sd/success_rate": float(plan.success.float().mean()) if plan.success.numel() else 0.0,
        "sd/pass_rate_mean": float(plan.pass_rate.mean()) if plan.pass_rate.numel() else 0.0,
        "sd/teacher_frac": float(active.float().mean()) if active.numel() else 0.0,
        "sd/sc_weight_mean_active": float(plan.weight[active].mean()) if active.any() else 0.0,
        "sd/sc_weight_max": float(plan.weight.max()) if plan.weight.numel() else 0.0,
        "sd/teacher_prompt_truncated_frac": float(truncated.float().mean()) if truncated.numel() else 0.0,
    }
    if uids is not None:
        successes: dict[Hashable, int] = {}
        sizes: dict[Hashable, int] = {}
        skip = padding.tolist() if padding is not None else [False] * len(uids)
        for uid, ok, pad in zip(uids, plan.success.tolist(), skip, strict=True):
            if pad:
                continue
            successes[uid] = successes.get(uid, 0) + int(ok)
            sizes[uid] = sizes.get(uid, 0) + 1
        group_size = max(sizes.values(), default=0)
        for k in range(group_size + 1):
            metrics[f"sc/pass_rate_hist/{k}"] = float(sum(1 for uid in successes if successes[uid] == k))
        metrics["sc/pass_rate_mean"] = metrics["sd/pass_rate_mean"]
        metrics["self_distillation/reprompt_sample_fraction"] = metrics["sd/teacher_frac"]
        if active.any():
            metrics["sc/weight_mean"] = float(plan.weight[active].mean())
            metrics["sc/weight_max"] = float(plan.weight[active].max())
            metrics["sc/weight_min"] = float(plan.weight[active].min())
    return metrics
