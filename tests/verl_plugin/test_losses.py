"""verl's own registry + ActorConfig on CPU tensors give the loss and gradient of ``scsdpo_verl.core``."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig

from scsdpo_verl.core import aggregate_loss, sampled_token_distillation_loss
from scsdpo_verl.verl_plugin.losses import scsdpo_actor_loss
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig

B, T = 5, 7


def actor_config(loss_mode: str, loss_agg_mode: str = "token-mean", is_clip: float = 2.0) -> ActorConfig:
    """verl's ActorConfig as the CPU tests upstream build it, with our policy-loss settings."""
    return ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode=loss_agg_mode,
        policy_loss=SelfDistillationPolicyLossConfig(loss_mode=loss_mode, is_clip=is_clip),
    )


@pytest.fixture
def tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    response_mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(B, T) * 3
    # current log-probs drift from old so some IS ratios exceed the cap of 2
    current = old + torch.randn(B, T) * 0.8
    return {
        "response_mask": response_mask,
        "old": old,
        "current": current,
        "teacher": -torch.rand(B, T) * 3,
        "weight": torch.tensor([1.3, 0.0, 0.7, 1.0, 2.0]),
        "has_teacher": torch.tensor([True, False, True, True, True]),
        "rollout_is": torch.rand(B, T) + 0.5,
    }


def core_loss(x, weight, mode="token-mean", rollout_is=None):
    """Independent path: core's per-token loss and aggregation (no verl)."""
    log_prob = x["current"].clone().requires_grad_(True)
    mask = x["response_mask"] & x["has_teacher"].unsqueeze(-1)
    per_token, _ = sampled_token_distillation_loss(log_prob, x["teacher"], mask, old_logprobs=x["old"], is_clip=2.0)
    if rollout_is is not None:
        per_token = per_token * rollout_is
    loss = aggregate_loss(per_token, x["response_mask"], sample_weight=weight * x["has_teacher"], mode=mode)
    loss.backward()
    return loss.detach(), log_prob.grad


def verl_loss(x, loss_mode, mode="token-mean", rollout_is=None, config=None):
    log_prob = x["current"].clone().requires_grad_(True)
    fn = get_policy_loss_fn(loss_mode)
    loss, metrics = fn(
        old_log_prob=x["old"],
        log_prob=log_prob,
        advantages=torch.randn(B, T),  # ignored by SDPO
        response_mask=x["response_mask"],
        loss_agg_mode=mode,
        config=config or actor_config(loss_mode, mode),
        rollout_is_weights=rollout_is,
        teacher_log_probs=x["teacher"],
        sample_weight=x["weight"],
        self_distillation_mask=x["has_teacher"],
    )
    loss.backward()
    return loss.detach(), log_prob.grad, metrics


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_sc_sdpo_matches_core(tensors, mode):
    expected_loss, expected_grad = core_loss(tensors, tensors["weight"], mode)
    loss, grad, metrics = verl_loss(tensors, "sc_sdpo", mode)
    assert torch.allclose(loss, expected_loss, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-7)
    assert grad[~tensors["response_mask"]].abs().max() == 0
    assert grad[1].abs().max() == 0  # no teacher -> no gradient
    assert "actor/sd/is_ratio_mean" in metrics


def test_sdpo_ignores_weights(tensors):
    expected_loss, expected_grad = core_loss(tensors, torch.ones(B))
    loss, grad, _ = verl_loss(tensors, "sdpo")
    assert torch.allclose(loss, expected_loss, atol=1e-6) and torch.allclose(grad, expected_grad, atol=1e-7)


def test_rollout_is_weights_multiply_the_loss(tensors):
    expected_loss, expected_grad = core_loss(tensors, tensors["weight"], rollout_is=tensors["rollout_is"])
    loss, grad, _ = verl_loss(tensors, "sc_sdpo", rollout_is=tensors["rollout_is"])
    assert torch.allclose(loss, expected_loss, atol=1e-6) and torch.allclose(grad, expected_grad, atol=1e-7)


def test_gradient_by_hand_on_policy():
    """On-policy (ratio 1): d loss / d log pi_t = -w (log pi_T - log pi_S) / N_tokens for each token."""
    student = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    teacher = torch.tensor([[-0.5, -2.5], [-1.0, -1.0]])
    mask = torch.tensor([[True, True], [True, False]])
    x = {"current": student, "old": student.clone(), "teacher": teacher, "response_mask": mask,
         "weight": torch.tensor([2.0, 0.5]), "has_teacher": torch.tensor([True, True])}  # fmt: skip
    _, grad, _ = verl_loss(x, "sc_sdpo")
    expected = torch.tensor([[-2.0 * 0.5 / 3, -2.0 * -0.5 / 3], [-0.5 * -0.5 / 3, 0.0]])
    assert torch.allclose(grad, expected)


def test_global_batch_info_scales_like_verl(tensors):
    """dp_size=2 and a global token count: loss = local weighted sum / global tokens * dp_size."""
    config = actor_config("sc_sdpo")
    config.global_batch_info.update(dp_size=2, batch_num_tokens=40, global_batch_size=10, loss_scale_factor=None)
    loss, _, _ = verl_loss(tensors, "sc_sdpo", config=config)
    local_mean, _ = core_loss(tensors, tensors["weight"])
    local_tokens = tensors["response_mask"].sum()
    assert torch.allclose(loss, local_mean * local_tokens / 40 * 2, atol=1e-6)


def test_missing_teacher_values_fail_clearly(tensors):
    fn = get_policy_loss_fn("sc_sdpo")
    with pytest.raises(ValueError, match="teacher_log_probs"):
        fn(tensors["old"], tensors["current"], torch.zeros(B, T), tensors["response_mask"], "token-mean",
           actor_config("sc_sdpo"))  # fmt: skip
    with pytest.raises(ValueError, match="sample_weight"):
        fn(tensors["old"], tensors["current"], torch.zeros(B, T), tensors["response_mask"], "token-mean",
           actor_config("sc_sdpo"), teacher_log_probs=tensors["teacher"])  # fmt: skip


def _nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def test_actor_loss_reads_the_micro_batch_like_verl(tensors):
    """scsdpo_actor_loss on a jagged micro-batch (verl's no-padding layout) equals the direct call."""
    lengths = tensors["response_mask"].sum(-1).tolist()
    prompt_lengths = [3, 2, 4, 2, 3]
    responses = [torch.randint(5, 50, (n,)) for n in lengths]
    prompts = [torch.randint(5, 50, (n,)) for n in prompt_lengths]
    # model output: one log-prob per sequence position; position t scores token t+1
    full = [
        torch.cat([torch.zeros(p - 1), tensors["current"][i, :n], torch.zeros(1)])
        for i, (p, n) in enumerate(zip(prompt_lengths, lengths, strict=True))
    ]
    per_row = lambda values: [values[i, :n] for i, n in enumerate(lengths)]  # noqa: E731
    data = TensorDict(
        {
            "prompts": _nested(prompts),
            "responses": _nested(responses),
            "response_mask": _nested([torch.ones(n, dtype=torch.int64) for n in lengths]),
            "old_log_probs": _nested(per_row(tensors["old"])),
            "advantages": _nested(per_row(torch.zeros(B, T))),
            "teacher_log_probs": _nested(per_row(tensors["teacher"])),
            "sc_weight": _nested([tensors["weight"][i].expand(n).clone() for i, n in enumerate(lengths)]),
            "self_distillation_mask": _nested(
                [tensors["has_teacher"][i].float().expand(n).clone() for i, n in enumerate(lengths)]
            ),
        },
        batch_size=B,
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    values = torch.cat(full).requires_grad_(True)
    model_output = {"log_probs": _nested_from_values(values, [p + n for p, n in zip(prompt_lengths, lengths,
                                                                                       strict=True)])}  # fmt: skip
    loss, metrics = scsdpo_actor_loss(actor_config("sc_sdpo"), model_output, data)
    expected_loss, _ = core_loss(tensors, tensors["weight"])
    assert torch.allclose(loss.detach(), expected_loss, atol=1e-6)
    loss.backward()
    assert values.grad is not None and values.grad.abs().sum() > 0
    assert "actor/pg_loss" in metrics


def _nested_from_values(values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return torch.nested.nested_tensor_from_jagged(values, offsets)


def test_actor_loss_refuses_kl_and_other_modes(tensors):
    config = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                         policy_loss=SelfDistillationPolicyLossConfig(loss_mode="vanilla"))  # fmt: skip
    with pytest.raises(ValueError, match="loss_mode"):
        scsdpo_actor_loss(config, {}, TensorDict({}, batch_size=0))


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        SelfDistillationPolicyLossConfig(alpha=1.5)
    with pytest.raises(ValueError, match="sc_normalize"):
        SelfDistillationPolicyLossConfig(sc_normalize="batch_median")
    assert SelfDistillationPolicyLossConfig(loss_mode="sdpo").weight_exponent() == 0.0
    assert SelfDistillationPolicyLossConfig(loss_mode="sc_sdpo").weight_exponent() == 0.5
