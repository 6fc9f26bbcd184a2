"""The self-teacher: demonstrations from successful siblings, teacher prompts, and the EMA update.

Templates and selection rules follow the SDPO reference (lasgroup/SDPO ``actor.yaml`` and
``RayPPOTrainer._maybe_build_self_distillation_batch``); see ``shared/notes/sdpo_reference.md``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

_THINK_BLOCK = re.compile(r"<think>.*?</think>", flags=re.DOTALL)


@dataclass(frozen=True)
class TeacherTemplates:
    """The reference's reprompt templates (``{prompt}`` is the last user message)."""

    reprompt: str = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
    solution: str = "\nCorrect solution:\n\n{successful_previous_attempt}\n\n"
    feedback: str = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback_raw}\n\n"


DEFAULT_TEMPLATES = TeacherTemplates()


def strip_thinking(text: str) -> str:
    """Remove ``<think>...</think>`` blocks (the teacher sees only the answer part of a demonstration)."""
    return _THINK_BLOCK.sub("", text).strip()


def select_demonstrations(
    group_ids: Sequence[Hashable],
    success: torch.Tensor | Sequence[bool],
    responses: Sequence[str],
    *,
    exclude_self: bool = True,
    strip_thinking: bool = True,
) -> list[str | None]:
    """For each sample, the first successful sibling's response in its group, or None.

    With ``exclude_self`` a sample never gets its own response, so the lone success of a group gets None
    (the reference's ``dont_reprompt_on_self_success``). "First" is batch order, as in the reference (rollout
    order is random, so this is effectively a random successful sibling).
    """
    flags = [bool(s) for s in (success.tolist() if isinstance(success, torch.Tensor) else success)]
    if not (len(group_ids) == len(flags) == len(responses)):
        raise ValueError(
            f"group_ids, success and responses must have equal length, got "
            f"{len(group_ids)}, {len(flags)}, {len(responses)}"
        )
    successes_by_group: dict[Hashable, list[int]] = {}
    for i, (gid, ok) in enumerate(zip(group_ids, flags, strict=True)):
        if ok:
            successes_by_group.setdefault(gid, []).append(i)
    demonstrations: list[str | None] = []
    for i, gid in enumerate(group_ids):
        donor = next((j for j in successes_by_group.get(gid, []) if not (exclude_self and j == i)), None)
        if donor is None:
            demonstrations.append(None)
        else:
            text = responses[donor]
            demonstrations.append(_THINK_BLOCK.sub("", text).strip() if strip_thinking else text)
    return demonstrations


def build_teacher_prompt(
    prompt: str,
    solution: str | None = None,
    feedback: str | None = None,
    templates: TeacherTemplates = DEFAULT_TEMPLATES,
) -> str:
    """The teacher's user message: the original prompt plus the solution and/or feedback blocks.

    Empty or None ``solution``/``feedback`` leave their block out. The caller puts the result through the
    chat template (system messages kept) and appends the student's response tokens.
    """
    solution_block = templates.solution.format(successful_previous_attempt=solution) if solution else ""
    feedback_block = templates.feedback.format(feedback_raw=feedback) if feedback else ""
    return templates.reprompt.format(prompt=prompt, solution=solution_block, feedback=feedback_block)


def build_teacher_prompts(
    prompts: Sequence[str],
    demonstrations: Sequence[str | None],
    feedbacks: Sequence[str | None] | None = None,
    *,
    include_feedback: bool = False,
    feedback_only_without_solution: bool = True,
    templates: TeacherTemplates = DEFAULT_TEMPLATES,
) -> tuple[list[str], torch.Tensor]:
    """Teacher user messages for a batch and the self-distillation mask.

    ``mask[i]`` is True iff sample i got a demonstration or (with ``include_feedback``) a non-empty feedback;
    samples without any context keep their original prompt and must get zero loss. The reference's
    SciKnowEval/tool-use runs use ``include_feedback=False``.
    """
    if len(prompts) != len(demonstrations) or (feedbacks is not None and len(feedbacks) != len(prompts)):
        raise ValueError("prompts, demonstrations and feedbacks must have equal length")
    teacher_prompts: list[str] = []
    mask: list[bool] = []
    for i, (prompt, solution) in enumerate(zip(prompts, demonstrations, strict=True)):
        feedback = feedbacks[i] if (include_feedback and feedbacks is not None) else None
        if feedback and solution and feedback_only_without_solution:
            feedback = None
        has_context = bool(solution) or bool(feedback)
        mask.append(has_context)
        teacher_prompts.append(build_teacher_prompt(prompt, solution, feedback, templates) if has_context else prompt)
    return teacher_prompts, torch.tensor(mask, dtype=torch.bool)


@torch.no_grad()
def ema_lerp_(teacher: list[torch.Tensor], student: list[torch.Tensor], rate: float) -> None:
    """In place, tensor by tensor: ``t <- (1 - rate) t + rate s``; each ``s`` is moved to ``t``'s device and dtype
    first (a CPU-held teacher shard and a GPU student shard pair up). Shapes must match pairwise."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    if len(teacher) != len(student):
        raise ValueError(f"{len(teacher)} teacher tensors but {len(student)} student tensors")
    for i, (t, s) in enumerate(zip(teacher, student, strict=True)):
        if t.shape != s.shape:
            raise ValueError(f"tensor {i}: teacher shape {tuple(t.shape)} != student shape {tuple(s.shape)}")
        t.lerp_(s.to(device=t.device, dtype=t.dtype), rate)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, rate: float = 0.05) -> None:
    """In place: ``theta_T <- (1 - rate) theta_T + rate theta_S`` for every parameter (no grad)."""
    teacher_params = dict(teacher.named_parameters())
    student_params = dict(student.named_parameters())
    if teacher_params.keys() != student_params.keys():
        missing = sorted(set(teacher_params) ^ set(student_params))[:5]
        raise ValueError(f"teacher and student parameters differ, e.g. {missing}")
    names = list(teacher_params)
    ema_lerp_([teacher_params[n].data for n in names], [student_params[n].data for n in names], rate)
