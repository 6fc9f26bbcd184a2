"""Demonstration selection, teacher prompts (reference templates) and the EMA update."""

import pytest
import torch
from torch import nn

from scsdpo_verl.core import (
    DEFAULT_TEMPLATES,
    TeacherTemplates,
    build_teacher_prompt,
    build_teacher_prompts,
    ema_update_,
    select_demonstrations,
)


def test_first_successful_sibling_never_self():
    ids = ["a", "a", "a", "b", "b", "c", "c"]
    success = [False, True, True, True, False, False, False]
    responses = ["a0", "a1", "a2", "b0", "b1", "c0", "c1"]
    demos = select_demonstrations(ids, torch.tensor(success), responses)
    # a: first success is a1; a1 itself gets a2. b: lone success b0 gets nothing. c: all wrong.
    assert demos == ["a1", "a2", "a1", None, "b0", None, None]
    with_self = select_demonstrations(ids, success, responses, exclude_self=False)
    assert with_self == ["a1", "a1", "a1", "b0", "b0", None, None]


def test_all_correct_group_distils_every_sample_from_a_sibling():
    demos = select_demonstrations(["q"] * 3, [True] * 3, ["r0", "r1", "r2"])
    assert demos == ["r1", "r0", "r0"]


def test_thinking_is_stripped_from_demonstrations():
    responses = ["x", "<think>long\nchain</think> <answer>B</answer>"]
    assert select_demonstrations(["q", "q"], [False, True], responses) == ["<answer>B</answer>", None]
    raw = select_demonstrations(["q", "q"], [False, True], responses, strip_thinking=False)
    assert raw[0] == responses[1]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal length"):
        select_demonstrations(["a"], [True, False], ["x", "y"])


def test_teacher_prompt_matches_reference_templates_verbatim():
    assert build_teacher_prompt("Q?", "S") == (
        "Q?\nCorrect solution:\n\nS\n\n\n\nCorrectly solve the original question.\n"
    )
    assert build_teacher_prompt("Q?", None, "F") == (
        "Q?\nThe following is feedback from your unsuccessful earlier attempt:\n\nF\n\n"
        "\n\nCorrectly solve the original question.\n"
    )
    assert build_teacher_prompt("Q?") == "Q?\n\nCorrectly solve the original question.\n"
    custom = TeacherTemplates(reprompt="{solution}|{prompt}|{feedback}", solution="<{successful_previous_attempt}>")
    assert build_teacher_prompt("Q", "S", templates=custom) == "<S>|Q|"
    assert DEFAULT_TEMPLATES.reprompt.startswith("{prompt}")


def test_batch_prompts_and_self_distillation_mask():
    prompts = ["p0", "p1", "p2"]
    demos = ["s0", None, None]
    feedback = ["f0", "f1", ""]
    teacher_prompts, mask = build_teacher_prompts(prompts, demos, feedback)
    assert mask.tolist() == [True, False, False]  # feedback off by default (the reference's science/tool runs)
    assert teacher_prompts[1] == "p1" and "s0" in teacher_prompts[0]
    teacher_prompts, mask = build_teacher_prompts(prompts, demos, feedback, include_feedback=True)
    assert mask.tolist() == [True, True, False]
    assert "f0" not in teacher_prompts[0] and "f1" in teacher_prompts[1]  # feedback only without a solution
    teacher_prompts, _ = build_teacher_prompts(
        prompts, demos, feedback, include_feedback=True, feedback_only_without_solution=False
    )
    assert "f0" in teacher_prompts[0] and "s0" in teacher_prompts[0]


def test_ema_update_hand_worked_and_no_grad():
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = {n: 0.95 * p.detach() + 0.05 * dict(student.named_parameters())[n].detach()
                for n, p in teacher.named_parameters()}
    ema_update_(teacher, student, rate=0.05)
    for name, param in teacher.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name])
        assert param.grad is None
    ema_update_(teacher, student, rate=1.0)
    torch.testing.assert_close(teacher.weight, student.weight)


def test_ema_rejects_mismatched_models_and_bad_rate():
    with pytest.raises(ValueError, match="differ"):
        ema_update_(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="rate"):
        ema_update_(nn.Linear(3, 2), nn.Linear(3, 2), rate=1.5)
