"""One objective, two backends: on the same weights, the same batch (prompts, responses, rewards, groups) and the
same teacher weights, the local trainer's loss and gradient equal the verl plugin's, in float64, for grpo, sdpo and
sc_sdpo.

Local side: one ``train_step`` of the local trainer with its rollout and scorer replaced by the golden step's fixed
batch (tests/local/test_golden_step.py, which checks that side against an independent float64 computation).
verl side: verl's real code paths, run as two data-parallel ranks of one step (dp 2, verl's ``global_batch_size``),
whose gradients are averaged as FSDP averages them:
  grpo       verl's GRPO advantages (``core_algos``) and verl's stock ``ppo_loss``;
  sdpo, sc   the trainer's plan (``batch.plan_self_distillation``, teacher prompts through the chat template), the
             engine's ``prepare_model_inputs`` / ``prepare_model_outputs`` with the distillation hook, the EMA
             teacher's forward inside it (``TeacherScorer``), and ``scsdpo_actor_loss`` with verl's ``agg_loss``.
The per-token divergence of the hook is checked against a brute-force reference in test_losses.py.
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu

from scsdpo_verl.local import models as local_models
from scsdpo_verl.local.config import TrainConfig
from scsdpo_verl.verl_plugin.batch import encode_teacher_prompts, plan_self_distillation
from scsdpo_verl.verl_plugin.losses import (
    ON_POLICY,
    SC_WEIGHT,
    SD_MASK,
    TEACHER_INPUT_IDS,
    TeacherScorer,
    scsdpo_actor_loss,
)
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig
from tests.local.conftest import fake_rows
from tests.local.test_golden_step import QUESTIONS, RESPONSES, SYSTEMS, N, fixed_batch, run_step

KNOBS = dict(questions_per_step=4, rollouts_per_question=N, temperature=0.7, lr=1e-3, warmup_steps=1, alpha=0.3,
             topk=7, is_clip=0.8, exponent=0.7, success_threshold=0.5, add_tail=True,
             loss_agg_mode="seq-mean-token-mean", clip_ratio_low=0.2, clip_ratio_high=0.28, grad_clip=1e9)


@pytest.fixture(scope="module")
def models64(tmp_path_factory):
    """(policy, teacher, tokenizer) in float64: the tiny Qwen3 of the local tests, the teacher a perturbed copy."""
    rows = fake_rows(200, 0)
    tokenizer = local_models.train_tokenizer(local_models.corpus_texts(rows))
    policy = local_models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                           head_dim=16)
    policy.config._attn_implementation = "sdpa"  # exact on packed rows too (see test_losses.py)
    policy = policy.double()
    teacher = copy.deepcopy(policy)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return policy, teacher.eval().requires_grad_(False), tokenizer


def nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def chat(tokenizer, messages) -> list[int]:
    """The trainer's ``_encode_messages`` (chat template with generation prompt, enable_thinking=False)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def verl_step(method: str, models64) -> tuple[float, dict[str, torch.Tensor]]:
    """The verl plugin's loss and (rank-averaged) gradient of one step on the fixed batch, dp 2."""
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
    from verl.workers.config import ActorConfig
    from verl.workers.utils.losses import ppo_loss

    from tests.verl_plugin.test_losses import stub_engine

    policy, teacher, tokenizer = copy.deepcopy(models64[0]), models64[1], models64[2]
    batch = fixed_batch(tokenizer)
    size = len(RESPONSES)
    messages = [[{"role": "system", "content": SYSTEMS[i // N]}, {"role": "user", "content": QUESTIONS[i // N]}]
                for i in range(size)]
    prompts = [torch.tensor(chat(tokenizer, m)) for m in messages]
    responses = [torch.tensor(t) for t in batch.tokens]
    scores = torch.tensor([r for _, r, _ in RESPONSES])
    uids = [str(i // N) for i in range(size)]
    settings = SelfDistillationPolicyLossConfig(
        loss_mode=method if method != "grpo" else "sdpo", alpha=KNOBS["alpha"], topk=KNOBS["topk"],
        add_tail=KNOBS["add_tail"], is_clip=KNOBS["is_clip"], sc_exponent=KNOBS["exponent"], logits_chunk_rows=5)
    if method == "grpo":
        settings = None
        config = ActorConfig(strategy="fsdp", rollout_n=N, ppo_micro_batch_size_per_gpu=1,
                             loss_agg_mode=KNOBS["loss_agg_mode"], clip_ratio_low=KNOBS["clip_ratio_low"],
                             clip_ratio_high=KNOBS["clip_ratio_high"])  # fmt: skip
        token_scores = torch.zeros(size, max(len(r) for r in responses), dtype=torch.float64)
        mask = torch.zeros_like(token_scores)
        for i, r in enumerate(responses):
            token_scores[i, len(r) - 1], mask[i, :len(r)] = scores[i], 1
        advantages, _ = compute_grpo_outcome_advantage(token_scores, mask, np.array(uids),
                                                       norm_adv_by_std_in_grpo=False)
        extra = {"advantages": nested([advantages[i, :len(r)] for i, r in enumerate(responses)])}
        loss_fn = partial(ppo_loss, config=config)
    else:
        config = ActorConfig(strategy="fsdp", rollout_n=N, ppo_micro_batch_size_per_gpu=1,
                             loss_agg_mode=KNOBS["loss_agg_mode"], policy_loss=settings)
        texts = batch.texts
        plan = plan_self_distillation(uids, scores, messages, texts, success_threshold=KNOBS["success_threshold"],
                                      weight_exponent=settings.weight_exponent(),
                                      weight_normalize=settings.sc_normalize)
        teacher_prompts, _ = encode_teacher_prompts(plan.teacher_messages, partial(chat, tokenizer),
                                                    max_length=10240, side="right")
        extra = {
            "advantages": nested([torch.zeros(len(r), dtype=torch.float64) for r in responses]),
            SC_WEIGHT: nested([plan.weight[i].double().expand(len(r)).clone() for i, r in enumerate(responses)]),
            SD_MASK: nested([plan.has_teacher[i].double().expand(len(r)).clone() for i, r in enumerate(responses)]),
            TEACHER_INPUT_IDS: nested([torch.cat([torch.tensor(p), r]) if a else torch.tensor([0])
                                       for p, r, a in zip(teacher_prompts, responses, plan.has_teacher.tolist(),
                                                          strict=True)]),
        }
        loss_fn = partial(scsdpo_actor_loss, config=config, teacher=TeacherScorer(teacher, chunk_rows=5))

    # the old log-probs: one forward of the current policy (on-policy, as the trainer's old_log_prob pass)
    with torch.no_grad():
        old = [torch.log_softmax(policy(input_ids=torch.cat([p, r])[None]).logits[0, len(p) - 1:-1]
                                 / float(torch.tensor(KNOBS["temperature"], dtype=torch.float32)), -1)
               .gather(-1, r[:, None])[:, 0] for p, r in zip(prompts, responses, strict=True)]
    engine = stub_engine()
    losses = []
    for rank in (slice(0, size // 2), slice(size // 2, size)):  # two data-parallel ranks
        rows = range(size)[rank]
        data = TensorDict({
            "input_ids": nested([torch.cat([prompts[i], responses[i]]) for i in rows]),
            "position_ids": nested([torch.arange(len(prompts[i]) + len(responses[i])) for i in rows]),
            "prompts": nested([prompts[i] for i in rows]),
            "responses": nested([responses[i] for i in rows]),
            "response_mask": nested([torch.ones(len(responses[i]), dtype=torch.int64) for i in rows]),
            "old_log_probs": nested([old[i] for i in rows]),
            **{key: nested([value.unbind()[i] for i in rows]) for key, value in extra.items()},
        }, batch_size=len(rows))
        tu.assign_non_tensor(data, use_remove_padding=True, distillation_use_topk=method != "grpo",
                             temperature=KNOBS["temperature"], dp_size=2, batch_num_tokens=None,
                             global_batch_size=size, **{ON_POLICY: True})
        model_inputs, output_args = engine.prepare_model_inputs(data)
        output = policy(**model_inputs, use_cache=False)
        model_output = engine.prepare_model_outputs(output, output_args, data,
                                                    logits_processor_func=None if method == "grpo" else loss_fn)
        loss, _ = loss_fn(model_output=model_output, data=data)
        loss.backward()  # gradients add up over the two ranks; FSDP's reduce divides by dp below
        losses.append(float(loss))
    grads = {name: p.grad / 2 for name, p in policy.named_parameters() if p.grad is not None}
    return sum(losses) / 2, grads


@pytest.mark.parametrize("method", ["grpo", "sdpo", "sc_sdpo"])
def test_local_and_verl_compute_the_same_loss_and_gradient(method, models64, monkeypatch):
    cfg = TrainConfig(model_path="unused", run_dir="unused", method=method, **KNOBS)
    local = run_step(cfg, models64, monkeypatch)
    local_loss, local_grad = local["metrics"]["actor/pg_loss"], local["trace"]["grad"]
    verl_loss, verl_grad = verl_step(method, models64)
    if method != "grpo":
        assert local["trace"]["has_teacher"].any() and local_loss > 0
    # (GRPO's on-policy loss is -mean(A) ~ 0: the local trainer's rewards and advantages are float32, hence abs)
    assert verl_loss == pytest.approx(local_loss, rel=1e-6, abs=1e-7)
    assert set(verl_grad) == set(local_grad)
    for name, grad in local_grad.items():
        scale = float(grad.abs().max())
        assert scale > 0, name
        assert torch.allclose(verl_grad[name], grad, rtol=1e-6, atol=1e-6 * scale), name
    worst = max(float((verl_grad[n] - g).abs().max() / g.abs().max()) for n, g in local_grad.items())
    print(f"{method}: loss {local_loss:.6e} vs {verl_loss:.6e}, worst gradient difference {worst:.1e} of the max")
