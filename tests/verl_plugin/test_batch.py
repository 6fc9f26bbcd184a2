"""The trainer's batch logic (pass rates, weights, teacher prompts and rows, masks, padding) on a fixture."""

from __future__ import annotations

import math

import pytest
import torch
from verl.workers.utils.padding import response_from_nested

from scsdpo_verl.verl_plugin.batch import (
    broadcast_per_sample,
    build_teacher_rows,
    encode_teacher_prompts,
    plan_self_distillation,
    response_log_probs,
    sequence_scores,
    truncate_prompt,
)
from scsdpo_verl.verl_plugin.losses import per_sample_from_tokens

from .conftest import toy_encode


def _plan(batch, exponent=0.5, **kwargs):
    return plan_self_distillation(
        batch["uids"], batch["scores"], batch["messages"], batch["texts"],
        success_threshold=0.5, weight_exponent=exponent, weight_normalize="batch_mean", **kwargs,
    )  # fmt: skip


def test_sequence_scores_sums_token_rewards():
    rows = [torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5]), torch.tensor([0.0, 0.0])]
    assert sequence_scores(rows).tolist() == [1.0, 0.5, 0.0]


def test_pass_rates_and_teacher_mask(rollout_batch):
    plan = _plan(rollout_batch)
    assert plan.pass_rate.tolist() == [0.5] * 4 + [0.25] * 4 + [0.0] * 2
    # q0: every row has a sibling success (rows 1 and 2 give each other); q1: the lone success (row 5) has
    # none with exclude_self; q2: nothing succeeded
    assert plan.has_teacher.tolist() == [True] * 4 + [True, False, True, True] + [False, False]


def test_sc_weights_by_hand(rollout_batch):
    plan = _plan(rollout_batch)
    raw_q0, raw_q1 = math.sqrt(0.5 * 0.5), math.sqrt(0.25 * 0.75)
    mean_active = (4 * raw_q0 + 3 * raw_q1) / 7
    expected = [raw_q0 / mean_active] * 4 + [raw_q1 / mean_active, 0.0, raw_q1 / mean_active,
                                             raw_q1 / mean_active] + [0.0, 0.0]  # fmt: skip
    assert plan.weight.tolist() == pytest.approx(expected, rel=1e-6)
    # SDPO: exponent 0 -> every sample with a teacher weighs 1
    assert _plan(rollout_batch, exponent=0.0).weight.tolist() == [1.0] * 5 + [0.0] + [1.0, 1.0, 0.0, 0.0]


def test_teacher_messages_hold_sibling_answer_without_thinking(rollout_batch):
    plan = _plan(rollout_batch)
    row0 = plan.teacher_messages[0]
    assert row0[0] == rollout_batch["messages"][0][0]  # the system message is kept
    assert row0[1]["role"] == "user" and "What is 2+2?" in row0[1]["content"]
    assert "answer 1" in row0[1]["content"] and "<think>" not in row0[1]["content"]
    assert "answer 2" in plan.teacher_messages[1][1]["content"]  # row 1 gets its sibling (row 2), not itself
    assert plan.teacher_messages[5] == rollout_batch["messages"][5]  # no teacher: unchanged prompt
    assert rollout_batch["messages"][0][1]["content"] == "What is 2+2?"  # the input was not mutated


def test_self_success_allowed_when_not_excluded(rollout_batch):
    plan = _plan(rollout_batch, exclude_self=False)
    assert bool(plan.has_teacher[5]) and "answer 5" in plan.teacher_messages[5][1]["content"]


def test_feedback_gives_a_teacher_only_when_enabled(rollout_batch):
    feedbacks = [None] * 8 + ["wrong unit", None]
    assert not _plan(rollout_batch, feedbacks=feedbacks).has_teacher[8]
    plan = _plan(rollout_batch, feedbacks=feedbacks, include_feedback=True)
    assert plan.has_teacher[8] and "wrong unit" in plan.teacher_messages[8][1]["content"]


def test_bad_rows_are_named(rollout_batch):
    messages = list(rollout_batch["messages"])
    messages[3] = [{"role": "system", "content": "no user turn"}]
    with pytest.raises(ValueError, match="raw_prompt row 3"):
        plan_self_distillation(
            rollout_batch["uids"], rollout_batch["scores"], messages, rollout_batch["texts"],
            success_threshold=0.5, weight_exponent=0.5, weight_normalize="batch_mean",
        )  # fmt: skip
    with pytest.raises(ValueError, match="B rows"):
        _plan({**rollout_batch, "scores": rollout_batch["scores"][:3]})


def test_truncation_sides():
    assert truncate_prompt([1, 2, 3, 4], 3, "right") == [1, 2, 3]
    assert truncate_prompt([1, 2, 3, 4], 3, "left") == [2, 3, 4]
    assert truncate_prompt([1, 2], 3, "right") == [1, 2]
    with pytest.raises(ValueError):
        truncate_prompt([1, 2, 3, 4], 3, "middle")


def test_teacher_rows_layout_and_truncation_flags(rollout_batch):
    plan = _plan(rollout_batch)
    prompt_ids, truncated = encode_teacher_prompts(plan.teacher_messages, toy_encode, max_length=80, side="right")
    assert truncated[0] and not truncated[5]  # teacher prompts with a demonstration are longer
    assert all(len(ids) <= 80 for ids in prompt_ids)
    rows = build_teacher_rows(prompt_ids, rollout_batch["responses"])
    for i, response in enumerate(rollout_batch["responses"]):
        n_prompt = len(prompt_ids[i])
        assert torch.equal(rows["input_ids"][i][n_prompt:], response)  # the student's own tokens
        assert torch.equal(rows["input_ids"][i][:n_prompt], torch.tensor(prompt_ids[i]))
        assert rows["position_ids"][i].tolist() == list(range(n_prompt + response.numel()))
        assert rows["response_mask"][i].sum() == response.numel() == rows["loss_mask"][i].sum()
        assert rows["attention_mask"][i].all()


def test_teacher_values_align_with_student_positions(rollout_batch):
    """A per-position signal that encodes (row, token id) lands on the same response tokens via verl's slicer."""
    plan = _plan(rollout_batch)
    prompt_ids, _ = encode_teacher_prompts(plan.teacher_messages, toy_encode, max_length=10_000, side="right")
    rows = build_teacher_rows(prompt_ids, rollout_batch["responses"])
    # position t "scores" token t+1: value = 1000 * row + next token id
    per_position = [
        torch.cat([1000.0 * i + ids[1:].float(), torch.tensor([-1.0])]) for i, ids in enumerate(rows["input_ids"])
    ]
    nested = torch.nested.as_nested_tensor(per_position, layout=torch.jagged)
    mask = torch.nested.as_nested_tensor(rows["response_mask"], layout=torch.jagged)
    sliced = response_from_nested(nested, mask)
    for i, response in enumerate(rollout_batch["responses"]):
        expected = 1000.0 * i + response.float()
        assert torch.equal(sliced[i], expected)
        assert torch.equal(response_log_probs(per_position[i], per_position[i].numel(), response.numel()), expected)


def test_per_sample_fields_round_trip(rollout_batch):
    plan = _plan(rollout_batch)
    lengths = rollout_batch["response_lengths"]
    rows = broadcast_per_sample(plan.weight, lengths)
    padded = torch.nested.as_nested_tensor(rows, layout=torch.jagged).to_padded_tensor(0.0)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    assert torch.allclose(per_sample_from_tokens(padded, mask), plan.weight)
    # an empty response row reads back as 0, never garbage from padding
    empty = per_sample_from_tokens(torch.full((1, 3), 7.0), torch.zeros(1, 3, dtype=torch.bool))
    assert empty.tolist() == [0.0]


def test_plan_metrics_histogram_counts_questions_by_successes_without_padding_rows():
    from scsdpo_verl.verl_plugin.batch import SelfDistillationPlan, plan_metrics

    success = torch.tensor([True, False, False, True, True, True, False, False, True])
    uids = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]  # a: 1 of 3, b: 3 of 3, c: 0 of 2 (+ a padding row)
    padding = torch.tensor([False] * 8 + [True])
    plan = SelfDistillationPlan(success, torch.zeros(9), torch.tensor([False, True, True] + [False] * 6),
                                torch.tensor([0.0, 1.5, 0.5] + [0.0] * 6), [[]] * 9)
    metrics = plan_metrics(plan, torch.zeros(9, dtype=torch.bool), uids=uids, padding=padding)
    assert [metrics[f"sc/pass_rate_hist/{k}"] for k in range(4)] == [1.0, 1.0, 0.0, 1.0]
    assert "sc/pass_rate_hist/4" not in metrics
    assert (metrics["sc/weight_mean"], metrics["sc/weight_max"], metrics["sc/weight_min"]) == (1.0, 1.5, 0.5)
