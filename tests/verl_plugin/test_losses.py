"""The plugin's losses against formulas written out here (float64), through verl's own registry, ActorConfig,
``agg_loss`` and the engine's real ``prepare_model_inputs`` / ``prepare_model_outputs`` (distillation hook).

Nothing here calls ``scsdpo_verl.core`` to build an expected value.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig

from scsdpo_verl.verl_plugin.losses import (
    ON_POLICY,
    SC_WEIGHT,
    SD_MASK,
    TEACHER_INPUT_IDS,
    TEACHER_LOG_PROBS,
    TOKEN_DIVERGENCE,
    TeacherScorer,
    response_positions,
    scsdpo_actor_loss,
)
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig
from tests.core.test_distill import _brute_force_token  # the reference's per-token formula, numpy loops

B, T = 5, 7
CLIP = 2.0


def actor_config(loss_mode: str, loss_agg_mode: str = "seq-mean-token-mean", **settings) -> ActorConfig:
    """verl's ActorConfig as verl's own CPU tests build it, with our policy-loss settings."""
    return ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode=loss_agg_mode,
        policy_loss=SelfDistillationPolicyLossConfig(loss_mode=loss_mode, is_clip=CLIP, **settings),
    )


@pytest.fixture
def x() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    old = -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3
    # current log-probs drift from old both ways: ratios above the cap of 2 and below 1
    current = old + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.8
    return {
        "mask": torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1),
        "old": old,
        "current": current,
        "teacher": -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3,
        "divergence": torch.rand(B, T, generator=gen, dtype=torch.float64),
        "weight": torch.tensor([1.3, 0.0, 0.7, 1.0, 2.0], dtype=torch.float64),
        "has_teacher": torch.tensor([True, False, True, True, True]),
        "rollout_is": torch.rand(B, T, generator=gen, dtype=torch.float64) + 0.5,
    }


def hand_loss(x, per_token_value, weight, mode, rollout_is=None, dp_size=1, global_batch_size=None,
              batch_num_tokens=None) -> float:
    """sum over samples/tokens of w_i m_i c_it min(r_it, clip) v_it, aggregated by the named mode (loops)."""
    total_tokens, seq_sum, n_seqs = 0.0, 0.0, 0
    token_sum = 0.0
    for i in range(B):
        tokens = [t for t in range(T) if x["mask"][i, t]]
        if not tokens:
            continue
        n_seqs += 1
        row = 0.0
        for t in tokens:
            ratio = min(math.exp(x["current"][i, t] - x["old"][i, t]), CLIP)
            c = rollout_is[i, t].item() if rollout_is is not None else 1.0
            m = 1.0 if x["has_teacher"][i] else 0.0
            row += weight[i].item() * m * c * ratio * per_token_value[i, t].item()
        token_sum += row
        total_tokens += len(tokens)
        seq_sum += row / len(tokens)  # (verl adds 1e-8 to the count in float32, where it vanishes)
    if mode == "token-mean":
        return token_sum / (batch_num_tokens or total_tokens) * dp_size
    return seq_sum / (global_batch_size or n_seqs) * dp_size


def call_mode(x, loss_mode, signal, mode="seq-mean-token-mean", rollout_is=None, config=None):
    log_prob = x["current"].clone().requires_grad_(True)
    divergence = x["divergence"].clone().requires_grad_(True)
    fn = get_policy_loss_fn(loss_mode)
    loss, metrics = fn(
        old_log_prob=x["old"],
        log_prob=log_prob,
        advantages=torch.randn(B, T, dtype=torch.float64),  # ignored by SDPO
        response_mask=x["mask"],
        loss_agg_mode=mode,
        config=config or actor_config(loss_mode, mode),
        rollout_is_weights=rollout_is,
        teacher_log_probs=x["teacher"] if signal == "sampled_token" else None,
        token_divergence=divergence if signal == "topk_jsd" else None,
        sample_weight=x["weight"],
        self_distillation_mask=x["has_teacher"],
    )
    loss.backward()
    return loss.detach(), log_prob.grad, divergence.grad, metrics


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
@pytest.mark.parametrize("loss_mode", ["sdpo", "sc_sdpo"])
def test_topk_signal_weights_masks_and_clips_the_token_divergence(x, mode, loss_mode):
    weight = x["weight"] if loss_mode == "sc_sdpo" else torch.ones(B, dtype=torch.float64)
    loss, log_prob_grad, divergence_grad, metrics = call_mode(x, loss_mode, "topk_jsd", mode,
                                                              rollout_is=x["rollout_is"])
    assert loss.item() == pytest.approx(hand_loss(x, x["divergence"], weight, mode, x["rollout_is"]), rel=1e-12)
    # the divergence carries the gradient; the IS weight is detached (no gradient to log pi of the sampled token)
    assert log_prob_grad is None or torch.count_nonzero(log_prob_grad) == 0
    n = x["mask"].sum() if mode == "token-mean" else None
    for i in range(B):
        for t in range(T):
            ratio = min(math.exp(x["current"][i, t] - x["old"][i, t]), CLIP)
            scale = 1.0 / float(n) if n is not None else 1.0 / (x["mask"][i].sum().item() * B)
            expected = (weight[i] * x["has_teacher"][i] * x["mask"][i, t] * x["rollout_is"][i, t] * ratio * scale)
            assert divergence_grad[i, t].item() == pytest.approx(float(expected), rel=1e-12, abs=1e-15)
    assert metrics["actor/sd/num_tokens"] == float((x["mask"] & x["has_teacher"][:, None]).sum())


@pytest.mark.parametrize("loss_mode", ["sdpo", "sc_sdpo"])
def test_sampled_token_signal_is_the_policy_gradient_with_a_capped_ratio(x, loss_mode):
    weight = x["weight"] if loss_mode == "sc_sdpo" else torch.ones(B, dtype=torch.float64)
    surrogate = -(x["teacher"] - x["current"]) * x["current"]  # -A_t log pi_S(y_t), A_t detached
    loss, log_prob_grad, _, _ = call_mode(x, loss_mode, "sampled_token", "token-mean")
    assert loss.item() == pytest.approx(hand_loss(x, surrogate, weight, "token-mean"), rel=1e-12)
    n = float(x["mask"].sum())
    ratios = (x["current"] - x["old"]).exp()
    assert (ratios[x["mask"]] < 1).any() and (ratios[x["mask"]] > CLIP).any()  # both sides of the cap occur
    for i in range(B):
        for t in range(T):
            ratio = min(ratios[i, t].item(), CLIP)
            expected = -(x["teacher"][i, t] - x["current"][i, t]) * ratio * weight[i] * x["has_teacher"][i] \
                * x["mask"][i, t] / n
            assert log_prob_grad[i, t].item() == pytest.approx(float(expected), rel=1e-10, abs=1e-15)


def test_data_parallel_halves_average_to_the_full_batch_objective(x):
    """dp 2 with verl's global_batch_size: each rank's loss x dp / global bs; FSDP averages the ranks' gradients."""
    full = hand_loss(x, x["divergence"], x["weight"], "seq-mean-token-mean")
    halves = []
    for rows in (slice(0, 3), slice(3, 5)):
        part = {k: v[rows] for k, v in x.items()}
        config = actor_config("sc_sdpo")
        config.global_batch_info.update(dp_size=2, batch_num_tokens=None, global_batch_size=B, loss_scale_factor=None)
        fn = get_policy_loss_fn("sc_sdpo")
        loss, _ = fn(part["old"], part["current"], torch.zeros_like(part["old"]), part["mask"],
                     "seq-mean-token-mean", config, None, token_divergence=part["divergence"],
                     sample_weight=part["weight"], self_distillation_mask=part["has_teacher"])  # fmt: skip
        halves.append(loss.item())
    assert sum(halves) / 2 == pytest.approx(full, rel=1e-12)


def test_the_modes_refuse_missing_or_double_teacher_values(x):
    fn = get_policy_loss_fn("sc_sdpo")
    with pytest.raises(ValueError, match="exactly one of token_divergence"):
        fn(x["old"], x["current"], torch.zeros(B, T), x["mask"], "token-mean", actor_config("sc_sdpo"),
           sample_weight=x["weight"])  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of token_divergence"):
        fn(x["old"], x["current"], torch.zeros(B, T), x["mask"], "token-mean", actor_config("sc_sdpo"),
           teacher_log_probs=x["teacher"], token_divergence=x["divergence"], sample_weight=x["weight"])  # fmt: skip
    with pytest.raises(ValueError, match="sample_weight"):
        fn(x["old"], x["current"], torch.zeros(B, T), x["mask"], "token-mean", actor_config("sc_sdpo"),
           teacher_log_probs=x["teacher"])  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# the actor loss on verl's no-padding micro-batch layout
# ------------------------------------------------------------------------------------------------------------
def nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def nested_from_values(values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()])
    return torch.nested.nested_tensor_from_jagged(values, offsets)


def micro_batch(x, prompt_lengths, extra: dict) -> TensorDict:
    lengths = x["mask"].sum(-1).tolist()
    per_row = lambda values: [values[i, :n] for i, n in enumerate(lengths)]  # noqa: E731
    data = TensorDict(
        {
            "prompts": nested([torch.randint(5, 50, (p,)) for p in prompt_lengths]),
            "responses": nested([torch.randint(5, 50, (n,)) for n in lengths]),
            "response_mask": nested([torch.ones(n, dtype=torch.int64) for n in lengths]),
            "old_log_probs": nested(per_row(x["old"])),
            "advantages": nested(per_row(torch.zeros(B, T, dtype=torch.float64))),
            SC_WEIGHT: nested([x["weight"][i].expand(n).clone() for i, n in enumerate(lengths)]),
            SD_MASK: nested([x["has_teacher"][i].double().expand(n).clone() for i, n in enumerate(lengths)]),
            **extra,
        },
        batch_size=B,
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    return data


def full_sequence(values_by_row, prompt_lengths, lengths):
    """verl's model output layout: position t of a row scores token t + 1 (prompt positions hold junk)."""
    return torch.cat([torch.cat([torch.full((p - 1,), 7.0, dtype=torch.float64), values_by_row[i, :n],
                                 torch.full((1,), 7.0, dtype=torch.float64)])
                      for i, (p, n) in enumerate(zip(prompt_lengths, lengths, strict=True))])


@pytest.mark.parametrize("on_policy", [True, False])
def test_actor_loss_sampled_token_on_a_jagged_micro_batch(x, on_policy):
    prompt_lengths = [3, 2, 4, 2, 3]
    lengths = x["mask"].sum(-1).tolist()
    data = micro_batch(x, prompt_lengths, {TEACHER_LOG_PROBS: nested([x["teacher"][i, :n]
                                                                     for i, n in enumerate(lengths)])})
    tu.assign_non_tensor(data, **{ON_POLICY: on_policy})
    values = full_sequence(x["current"], prompt_lengths, lengths).requires_grad_(True)
    model_output = {"log_probs": nested_from_values(values, [p + n for p, n in zip(prompt_lengths, lengths,
                                                                                      strict=True)])}
    config = actor_config("sc_sdpo", "token-mean", teacher_signal="sampled_token")
    loss, metrics = scsdpo_actor_loss(config, model_output, data)
    reference = dict(x, old=x["current"]) if on_policy else x  # on-policy: pi_old = pi exactly, ratio 1
    surrogate = -(x["teacher"] - x["current"]) * x["current"]
    assert loss.item() == pytest.approx(hand_loss(reference, surrogate, x["weight"], "token-mean"), rel=1e-12)
    assert "actor/pg_loss" in metrics


def test_actor_loss_refuses_kl_other_modes_and_a_missing_hook(x):
    data = micro_batch(x, [3, 2, 4, 2, 3], {})
    kl = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, use_kl_loss=True,
                     policy_loss=SelfDistillationPolicyLossConfig(loss_mode="sdpo"))  # fmt: skip
    with pytest.raises(ValueError, match="use_kl_loss"):
        scsdpo_actor_loss(kl, {"log_probs": None}, data)
    config = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                         policy_loss=SelfDistillationPolicyLossConfig(loss_mode="vanilla"))  # fmt: skip
    with pytest.raises(ValueError, match="loss_mode"):
        scsdpo_actor_loss(config, {}, data)
    with pytest.raises(KeyError, match="distillation hook"):
        scsdpo_actor_loss(actor_config("sdpo"), {"log_probs": None}, data)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        SelfDistillationPolicyLossConfig(alpha=1.5)
    with pytest.raises(ValueError, match="sc_normalize"):
        SelfDistillationPolicyLossConfig(sc_normalize="batch_median")
    with pytest.raises(ValueError, match="teacher_signal"):
        SelfDistillationPolicyLossConfig(teacher_signal="logits")
    with pytest.raises(ValueError, match="topk"):
        SelfDistillationPolicyLossConfig(topk=0)
    assert SelfDistillationPolicyLossConfig().teacher_signal == "topk_jsd"
    assert SelfDistillationPolicyLossConfig(loss_mode="sdpo").weight_exponent() == 0.0
    assert SelfDistillationPolicyLossConfig(loss_mode="sc_sdpo").weight_exponent() == 0.5


# ------------------------------------------------------------------------------------------------------------
# the distillation hook: verl's real prepare_model_inputs / prepare_model_outputs, tiny fp64 Qwen3 models
# ------------------------------------------------------------------------------------------------------------
V = 64


def tiny_models():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128)
    # sdpa separates packed rows exactly (from the position ids, with use_cache=False); eager does too, but its
    # float mask rounds at ~1e-8 even in float64, and this test compares at 1e-9
    config._attn_implementation = "sdpa"
    student = Qwen3ForCausalLM(config).double()
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return student, teacher


def stub_engine():
    """verl's FSDPEngineWithLMHead methods on a bare instance (no FSDP, no device): the hook's real code path."""
    import verl.utils.torch_functional as verl_F
    from verl.workers.config import FSDPEngineConfig
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    engine = object.__new__(FSDPEngineWithLMHead)
    engine.engine_config = FSDPEngineConfig(use_torch_compile=False)
    engine.pad_to_length, engine.pad_to_length_bucket, engine.use_ulysses_sp = False, 1024, False
    engine.ulysses_sequence_parallel_size = 1
    engine.compute_entropy_from_logits = verl_F.entropy_from_logits
    return engine


CASES = [  # (alpha, topk, add_tail, temperature, use_remove_padding)
    (0.5, 8, True, 1.0, True),
    (0.5, 8, True, 0.7, False),
    (0.0, 8, True, 1.0, True),
    (1.0, 8, False, 1.0, False),
    (0.5, None, True, 1.3, True),  # full vocabulary
    (0.5, V + 5, True, 1.0, False),  # k >= V is the full vocabulary too
]


@pytest.mark.parametrize(("alpha", "topk", "add_tail", "temperature", "remove_padding"), CASES)
def test_hook_token_divergence_equals_the_reference_formula(alpha, topk, add_tail, temperature, remove_padding):
    student, teacher = tiny_models()
    gen = torch.Generator().manual_seed(3)
    prompt_lengths, response_lengths, teacher_prompt_lengths = [4, 6, 3], [5, 1, 4], [9, 7, 5]
    active = [True, False, True]  # sample 1 has no teacher: zero divergence, never scored
    prompts = [torch.randint(3, V, (p,), generator=gen) for p in prompt_lengths]
    responses = [torch.randint(3, V, (r,), generator=gen) for r in response_lengths]
    teacher_prompts = [torch.randint(3, V, (p,), generator=gen) for p in teacher_prompt_lengths]
    ids = [torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]
    teacher_ids = [torch.cat([p, r]) if a else torch.tensor([0])
                   for p, r, a in zip(teacher_prompts, responses, active, strict=True)]
    data = TensorDict({
        "input_ids": nested(ids),
        "position_ids": nested([torch.arange(len(i)) for i in ids]),
        "prompts": nested(prompts),
        "responses": nested(responses),
        "response_mask": nested([torch.ones(r, dtype=torch.int64) for r in response_lengths]),
        TEACHER_INPUT_IDS: nested(teacher_ids),
        SD_MASK: nested([torch.full((r,), float(a)) for r, a in zip(response_lengths, active, strict=True)]),
    }, batch_size=3)
    tu.assign_non_tensor(data, use_remove_padding=remove_padding, distillation_use_topk=True,
                         temperature=temperature)
    settings = SelfDistillationPolicyLossConfig(loss_mode="sdpo", alpha=alpha, topk=topk, add_tail=add_tail,
                                                logits_chunk_rows=3)
    scorer = TeacherScorer(teacher, chunk_rows=2)

    def processor(student_logits=None, data=None, **_):
        return scsdpo_actor_loss(SimpleNamespace(policy_loss=settings), data=data, student_logits=student_logits,
                                 teacher=scorer)

    engine = stub_engine()
    model_inputs, output_args = engine.prepare_model_inputs(data)
    output = student(**model_inputs, use_cache=False)
    model_output = engine.prepare_model_outputs(output, output_args, data, logits_processor_func=processor)
    from verl.workers.utils.padding import no_padding_2_padding

    divergence = no_padding_2_padding(model_output[TOKEN_DIVERGENCE], data)  # [3, R_max]
    assert "log_probs" in model_output  # the hook leaves verl's own outputs in place
    coefficient = torch.linspace(0.5, 1.5, divergence.numel(), dtype=torch.float64).view_as(divergence)
    (divergence * coefficient).sum().backward()
    hook_grad = student.lm_head.weight.grad.clone()
    student.zero_grad()

    # independent: one plain forward per sample and per model, then the formula at every response position;
    # verl carries the temperature in float32, so it divides by float32(T)
    temperature = float(torch.tensor(temperature, dtype=torch.float32))
    expected_sum = torch.zeros((), dtype=torch.float64)
    for i in range(3):
        if not active[i]:
            assert divergence[i].abs().max() == 0
            continue
        p, r, tp = prompt_lengths[i], response_lengths[i], teacher_prompt_lengths[i]
        s_logits = student(input_ids=ids[i][None]).logits[0, p - 1:p + r - 1] / temperature
        with torch.no_grad():
            t_logits = teacher(input_ids=teacher_ids[i][None]).logits[0, tp - 1:tp + r - 1] / temperature
        for j in range(r):
            expected = _brute_force_token(s_logits[j].detach().numpy(), t_logits[j].numpy(), alpha, topk, add_tail)
            assert divergence[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-12), (i, j)
        # gradient: the same formula in torch, differentiable in the student's logits
        expected_sum = expected_sum + (torch_formula(s_logits, t_logits, alpha, topk, add_tail)
                                       * coefficient[i, :r]).sum()
    expected_sum.backward()
    assert torch.allclose(hook_grad, student.lm_head.weight.grad, rtol=1e-8, atol=1e-12)


def torch_formula(s_logits, t_logits, alpha, topk, add_tail):
    """The reference's per-token divergence in torch (float64), written from the definition."""
    s_logp, t_logp = torch.log_softmax(s_logits, -1), torch.log_softmax(t_logits, -1)
    if topk is not None and topk < s_logits.shape[-1]:
        idx = s_logits.detach().topk(topk, -1).indices
        s_sup, t_sup = s_logp.gather(-1, idx).exp(), t_logp.gather(-1, idx).exp()
        if add_tail:
            s_sup = torch.cat([s_sup, 1 - s_sup.sum(-1, keepdim=True)], -1)
            t_sup = torch.cat([t_sup, 1 - t_sup.sum(-1, keepdim=True)], -1)
        else:
            s_sup, t_sup = s_sup / s_sup.sum(-1, keepdim=True), t_sup / t_sup.sum(-1, keepdim=True)
    else:
        s_sup, t_sup = s_logp.exp(), t_logp.exp()

    def kl(p, q):
        return (p * (p.log() - q.log())).sum(-1)

    if alpha == 0:
        return kl(t_sup, s_sup)
    if alpha == 1:
        return kl(s_sup, t_sup)
    m = (1 - alpha) * s_sup + alpha * t_sup
    return (1 - alpha) * kl(s_sup, m) + alpha * kl(t_sup, m)


def test_response_positions_follow_verls_shift_by_one():
    positions = response_positions(torch.tensor([5, 3]), torch.tensor([2, 1]))
    assert [p.tolist() for p in positions] == [[2, 3], [6]]  # row 0: tokens 3, 4 predicted by 2, 3; row 1 at 5..7
