"""The processor branch of the ``topk_jsd`` loss: the EMA teacher's forward and the token divergence, run inside
verl's distillation logits-processor hook (``FSDPEngineWithLMHead.prepare_model_outputs``).

torch and ``scsdpo_verl.core`` only (no verl import), so the GPU check script can load it on a machine without verl.
``data`` is verl's micro-batch (a TensorDict; any mapping with the same nested fields works).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from scsdpo_verl.core import gathered_logprobs, generalized_jsd, topk_divergence

TEACHER_INPUT_IDS = "teacher_input_ids"  # topk_jsd: teacher prompt + the student's response, nested [B, L_i]
SD_MASK = "self_distillation_mask"  # per-sample 1/0 (has a teacher), stored broadcast over the response tokens
# model_output key of the processor branch: the per-token divergence (0 off the teacher's response positions)
TOKEN_DIVERGENCE = "sd_divergence"


# ------------------------------------------------------------------------------------------------------------
def response_positions(sequence_lengths: torch.Tensor, response_lengths: torch.Tensor) -> list[torch.Tensor]:
    """Per sample, the packed positions whose logits predict its response tokens.

    Sample i occupies ``[start_i, start_i + L_i)`` of the packed sequence (``start = cumsum(L) - L``); its
    response is the last ``R_i`` tokens, predicted by positions ``start_i + L_i - R_i - 1 + j`` (the convention
    of verl's ``no_padding_2_padding``). Shapes: [B], [B] -> B tensors of [R_i].
    """
    starts = torch.cumsum(sequence_lengths, 0) - sequence_lengths
    return [
        torch.arange(int(r), device=sequence_lengths.device) + int(s + n - r - 1)
        for s, n, r in zip(starts, sequence_lengths, response_lengths, strict=True)
    ]


class TeacherScorer:
    """The EMA teacher's log-probs at given token ids, from the reference engine's module (no gradient).

    The teacher rows of the active samples are packed into one sequence (position ids restart per row, as in
    verl's no-padding layout) and only the positions that predict response tokens reach the LM head
    (``logits_to_keep``). With no active row the module still runs a one-token forward, so that every FSDP
    rank runs the same number of teacher forwards (their all-gathers must pair up).
    """

    def __init__(self, module: torch.nn.Module, chunk_rows: int | None = None) -> None:
        self.module = module
        self.chunk_rows = chunk_rows or None

    @torch.no_grad()
    def logprobs(self, teacher_rows: list[torch.Tensor], response_lengths: list[int], token_ids: torch.Tensor,
                 temperature: torch.Tensor) -> torch.Tensor:
        """``log softmax(teacher logits / T)`` at ``token_ids`` ([sum R, k]) for each response position of the
        given rows (in row order); ``temperature`` is per position ([sum R]). Returns [sum R, k] fp32."""
        device = token_ids.device
        was_training = self.module.training
        self.module.eval()
        try:
            if not teacher_rows:
                dummy = torch.zeros((1, 1), dtype=torch.long, device=device)  # token 0: any id will do
                self.module(input_ids=dummy, position_ids=torch.zeros_like(dummy), use_cache=False, logits_to_keep=1)
                return torch.zeros(token_ids.shape, dtype=torch.float32, device=device)
            lengths = torch.tensor([len(row) for row in teacher_rows], device=device)
            keep = torch.cat(response_positions(lengths, torch.tensor(response_lengths, device=device)))
            input_ids = torch.cat(list(teacher_rows)).to(device).unsqueeze(0)
            position_ids = torch.cat([torch.arange(int(n), device=device) for n in lengths]).unsqueeze(0)
            logits = self.module(input_ids=input_ids, position_ids=position_ids, attention_mask=None,
                                 use_cache=False, logits_to_keep=keep).logits[0]
            logits = logits / temperature.to(logits.dtype).unsqueeze(-1)
            return gathered_logprobs(logits, token_ids, self.chunk_rows)
        finally:
            self.module.train(was_training)


def _per_sample(data: Mapping[str, Any], key: str) -> torch.Tensor:
    """A per-sample value stored broadcast over the response tokens (nested [B, R_i]) -> [B] (max over tokens)."""
    values = data[key]
    return torch.stack([row.max() if row.numel() else row.new_zeros(()) for row in values.unbind()])


def token_divergences(student_logits: torch.Tensor, data: Mapping[str, Any], teacher: TeacherScorer,
                      settings: Any) -> dict[str, torch.Tensor]:
    """The processor branch: per-token top-k + tail divergence of the micro-batch's packed sequence.

    ``student_logits`` is verl's [1, N, V] (packed, temperature applied, with gradient). The response rows are
    copied out (``index_select``) before anything keeps a reference: verl's fused cross-entropy may overwrite the
    logits buffer in its backward. Returns ``{TOKEN_DIVERGENCE: [1, N]}``, zero off the response positions of
    samples with a teacher.
    """
    input_ids = data["input_ids"]
    sequence_lengths = input_ids.offsets().diff()
    response_lengths = data["responses"].offsets().diff()
    positions = response_positions(sequence_lengths, response_lengths)
    active = (_per_sample(data, SD_MASK) > 0).tolist()
    rows = [i for i, a in enumerate(active) if a]
    logits = student_logits[0]
    device = logits.device
    # zeros connected to the student's graph: a micro-batch without any teacher still backpropagates (a 0 gradient)
    out = (logits[:, 0] * 0.0).to(torch.promote_types(logits.dtype, torch.float32))
    index = torch.cat([positions[i] for i in rows]) if rows else torch.zeros(0, dtype=torch.long, device=device)
    student = logits.index_select(0, index.to(device))  # a copy, never a view of verl's logits
    vocab = logits.shape[-1]
    full_vocab = settings.topk is None or settings.topk >= vocab
    top = (torch.arange(vocab, device=device).expand(len(index), vocab) if full_vocab
           else student.detach().topk(settings.topk, dim=-1).indices)

    temperature = data["temperature"]
    if isinstance(temperature, torch.Tensor) and temperature.numel() > 1:
        temperature = torch.cat([temperature[i].expand(int(response_lengths[i])) for i in rows]) if rows else None
    else:
        temperature = torch.full((len(index),), float(temperature), device=device)
    teacher_rows = [data[TEACHER_INPUT_IDS][i] for i in rows]
    teacher_logp = teacher.logprobs(teacher_rows, [int(response_lengths[i]) for i in rows], top,
                                    temperature if temperature is not None else torch.ones(0, device=device))
    if rows:
        student_logp = gathered_logprobs(student, top, settings.logits_chunk_rows or None)
        divergence = (generalized_jsd(student_logp, teacher_logp, settings.alpha) if full_vocab
                      else topk_divergence(student_logp, teacher_logp, settings.alpha, add_tail=settings.add_tail))
        out = out.index_put((index.to(device),), divergence.to(out.dtype))
    return {TOKEN_DIVERGENCE: out.unsqueeze(0)}
