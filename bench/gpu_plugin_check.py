"""GPU check of the verl plugin's loss and teacher-row logic with a tiny random Qwen3 (no network, no vLLM).

    python bench/gpu_plugin_check.py            # CUDA (fails if none)
    python bench/gpu_plugin_check.py --device cpu

What runs, all on the chosen device:
1. a synthetic batch (3 questions x rollouts, 0/1 rewards) -> pass rates, SC weights, teacher prompts and
   teacher rows (teacher prompt + the student's own response tokens) via ``scsdpo_verl.verl_plugin.batch``;
2. a tiny randomly initialised ``Qwen3ForCausalLM`` student and an EMA teacher copy score the student rows
   and the teacher rows; the response log-probs are cut out with verl's own ``response_from_nested``;
3. verl's ``get_policy_loss_fn('sc_sdpo')`` (verl ``ActorConfig``) and the plugin's ``scsdpo_actor_loss`` on a
   jagged micro-batch are compared with ``scsdpo_verl.core``; backward + AdamW step on the student;
4. the EMA teacher update (rate 0.05) is checked parameter-wise;
5. core's top-k(100)+tail JSD (the reference loss, not used by the plugin's ref-worker path) runs on the
   same logits for timing.
Prints one line per check and exits non-zero on a mismatch. Runs in seconds on one H100.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from tensordict import TensorDict
from transformers import Qwen3Config, Qwen3ForCausalLM
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import response_from_nested

from scsdpo_verl.core import aggregate_loss, ema_update_, sampled_token_distillation_loss, self_distillation_loss
from scsdpo_verl.verl_plugin.batch import (
    build_teacher_rows,
    encode_teacher_prompts,
    plan_metrics,
    plan_self_distillation,
)
from scsdpo_verl.verl_plugin.losses import scsdpo_actor_loss
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig

VOCAB = 512


def encode(messages) -> list[int]:
    """Stand-in chat template (no tokenizer download): bytes of 'role:content|' mapped into the vocab."""
    text = "".join(f"{m['role']}:{m['content']}|" for m in messages) + "assistant:"
    return [b % (VOCAB - 10) + 10 for b in text.encode()]


def nested(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def make_batch(device: torch.device, generator: torch.Generator) -> dict:
    """3 questions: q0 4 rollouts (2 right), q1 4 rollouts (1 right), q2 4 rollouts (all right)."""
    uids = ["q0"] * 4 + ["q1"] * 4 + ["q2"] * 4
    scores = torch.tensor([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float32)
    questions = {"q0": "Which gas do plants absorb?", "q1": "Pick the noble gas.", "q2": "2+2?"}
    messages = [[{"role": "system", "content": "Reason, then <answer>X</answer>."},
                 {"role": "user", "content": questions[u]}] for u in uids]  # fmt: skip
    texts = [f"<think>t{i}</think><answer>{'ABCD'[i % 4]}</answer>" for i in range(len(uids))]
    lengths = torch.randint(8, 40, (len(uids),), generator=generator).tolist()
    responses = [torch.randint(10, VOCAB, (n,), generator=generator) for n in lengths]
    return {"uids": uids, "scores": scores, "messages": messages, "texts": texts, "responses": responses}


def response_logits_and_logprobs(model, input_rows: list[torch.Tensor], response_lengths: list[int], device):
    """Right-padded forward; returns per-row response logits [R_i, V] and verl-sliced response log-probs."""
    width = max(r.numel() for r in input_rows)
    ids = torch.zeros(len(input_rows), width, dtype=torch.long, device=device)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(input_rows):
        ids[i, : row.numel()] = row.to(device)
        attention[i, : row.numel()] = 1
    logits = model(input_ids=ids, attention_mask=attention).logits.float()  # [B, L, V]
    # per-position log-prob of the next token, jagged as verl's engine returns it
    next_ids = torch.roll(ids, -1, dims=1)
    token_lp = torch.log_softmax(logits, -1).gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)
    per_position = [token_lp[i, : row.numel()] for i, row in enumerate(input_rows)]
    mask = nested([torch.ones(n, dtype=torch.long, device=device) for n in response_lengths])
    response_lp = response_from_nested(nested(per_position), mask)
    response_logits = [
        logits[i, row.numel() - n - 1 : row.numel() - 1] for i, (row, n) in enumerate(zip(input_rows, response_lengths,
                                                                                          strict=True))
    ]  # fmt: skip
    return response_logits, response_lp


def pad(rows: list[torch.Tensor], width: int, value: float = 0.0) -> torch.Tensor:
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), value)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; pass --device cpu for a CPU run")
        return 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}")
    results: list[bool] = []

    # 1. batch logic
    batch = make_batch(device, generator)
    settings = SelfDistillationPolicyLossConfig(loss_mode="sc_sdpo")
    plan = plan_self_distillation(
        batch["uids"], batch["scores"], batch["messages"], batch["texts"],
        success_threshold=settings.success_threshold, weight_exponent=settings.weight_exponent(),
        weight_normalize=settings.sc_normalize,
    )  # fmt: skip
    teacher_prompts, truncated = encode_teacher_prompts(plan.teacher_messages, encode, max_length=10240, side="right")
    student_prompts = [encode(m) for m in batch["messages"]]
    rows = build_teacher_rows(teacher_prompts, batch["responses"])
    student_rows = build_teacher_rows(student_prompts, batch["responses"])  # same layout, original prompt
    lengths = [r.numel() for r in batch["responses"]]
    print(f"batch: {len(lengths)} rollouts, response lengths {min(lengths)}-{max(lengths)}, "
          f"metrics {plan_metrics(plan, truncated)}")  # fmt: skip
    results.append(check("pass rates", plan.pass_rate.tolist() == [0.5] * 4 + [0.25] * 4 + [1.0] * 4,
                         f"{plan.pass_rate.tolist()}"))  # fmt: skip
    results.append(check("p=1 group gets weight 0", bool((plan.weight[8:] == 0).all()), f"{plan.weight.tolist()}"))

    # 2. tiny Qwen3 student + EMA teacher
    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
    )  # fmt: skip
    student = Qwen3ForCausalLM(config).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    with torch.no_grad():  # make teacher != student so the distillation signal is non-zero
        for p in teacher.parameters():
            p.add_(0.02 * torch.randn_like(p))
    print(f"model: Qwen3ForCausalLM {sum(p.numel() for p in student.parameters()) / 1e6:.2f}M params, random init")
    with torch.no_grad():
        teacher_logits, teacher_lp = response_logits_and_logprobs(teacher, rows["input_ids"], lengths, device)
        _, old_lp = response_logits_and_logprobs(student, student_rows["input_ids"], lengths, device)
    student_logits, student_lp = response_logits_and_logprobs(student, student_rows["input_ids"], lengths, device)
    width = max(lengths)
    mask = pad([torch.ones(n, dtype=torch.bool, device=device) for n in lengths], width, False)
    current = pad(list(student_lp.unbind()), width)
    teacher_pad = pad(list(teacher_lp.unbind()), width)
    old_pad = pad(list(old_lp.unbind()), width)
    weight, has_teacher = plan.weight.to(device), plan.has_teacher.to(device)

    # 3a. verl registry + ActorConfig vs core
    actor_config = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=settings)
    loss_fn = get_policy_loss_fn("sc_sdpo")
    leaf = current.detach().clone().requires_grad_(True)
    verl_value, _ = loss_fn(
        old_log_prob=old_pad, log_prob=leaf, advantages=torch.zeros_like(leaf), response_mask=mask,
        loss_agg_mode="token-mean", config=actor_config, teacher_log_probs=teacher_pad, sample_weight=weight,
        self_distillation_mask=has_teacher,
    )  # fmt: skip
    verl_value.backward()
    core_leaf = current.detach().clone().requires_grad_(True)
    per_token, _ = sampled_token_distillation_loss(core_leaf, teacher_pad, mask & has_teacher.unsqueeze(-1),
                                                   old_logprobs=old_pad, is_clip=2.0)  # fmt: skip
    core_value = aggregate_loss(per_token, mask, sample_weight=weight * has_teacher)
    core_value.backward()
    results.append(check("verl get_policy_loss_fn('sc_sdpo') == core (loss)",
                         torch.allclose(verl_value, core_value, atol=1e-6),
                         f"{verl_value.item():.6f} vs {core_value.item():.6f}"))  # fmt: skip
    results.append(check("verl get_policy_loss_fn('sc_sdpo') == core (grad)",
                         torch.allclose(leaf.grad, core_leaf.grad, atol=1e-7),
                         f"max |diff| {(leaf.grad - core_leaf.grad).abs().max().item():.2e}"))  # fmt: skip

    # 3b. the actor loss on a jagged micro-batch (verl's no-padding layout), backward into the model
    data = TensorDict(
        {
            "prompts": nested([torch.tensor(p, device=device) for p in student_prompts]),
            "responses": nested([r.to(device) for r in batch["responses"]]),
            "response_mask": nested([torch.ones(n, dtype=torch.long, device=device) for n in lengths]),
            "old_log_probs": nested(list(old_lp.unbind())),
            "advantages": nested([torch.zeros(n, device=device) for n in lengths]),
            "teacher_log_probs": teacher_lp,
            "sc_weight": nested([weight[i].expand(n).clone() for i, n in enumerate(lengths)]),
            "self_distillation_mask": nested([has_teacher[i].float().expand(n).clone() for i, n in enumerate(lengths)]),
        },
        batch_size=len(lengths),
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    full_width = max(r.numel() for r in student_rows["input_ids"])
    ids = pad([r.to(device) for r in student_rows["input_ids"]], full_width)
    attention = pad([torch.ones(r.numel(), dtype=torch.long, device=device) for r in student_rows["input_ids"]],
                    full_width)  # fmt: skip
    logits = student(input_ids=ids, attention_mask=attention).logits.float()
    token_lp = torch.log_softmax(logits, -1).gather(-1, torch.roll(ids, -1, 1).unsqueeze(-1)).squeeze(-1)
    jagged = nested([token_lp[i, : r.numel()] for i, r in enumerate(student_rows["input_ids"])])
    actor_value, metrics = scsdpo_actor_loss(actor_config, {"log_probs": jagged}, data)
    results.append(check("scsdpo_actor_loss (jagged micro-batch) == core",
                         torch.allclose(actor_value.detach(), core_value, atol=1e-5),
                         f"{actor_value.item():.6f}; metrics {sorted(metrics)[:4]}..."))  # fmt: skip
    actor_value.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    optimizer.step()
    results.append(check("backward + AdamW step", bool(torch.isfinite(grad_norm)), f"grad norm {grad_norm.item():.4f}"))

    # 4. EMA teacher update
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    ema_update_(teacher, student, 0.05)
    max_err = max(
        (p - (0.95 * before[n] + 0.05 * dict(student.named_parameters())[n].detach())).abs().max().item()
        for n, p in teacher.named_parameters()
    )
    results.append(check("EMA teacher update (rate 0.05)", max_err < 1e-6, f"max |err| {max_err:.2e}"))

    # 5. reference top-k + tail JSD on the same logits (core; the plugin's ref path is sampled-token)
    s_logits = pad([x.detach() for x in student_logits], width)
    t_logits = pad(teacher_logits, width)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tick = time.perf_counter()
    topk_loss, _ = self_distillation_loss(s_logits.requires_grad_(True), t_logits, mask & has_teacher.unsqueeze(-1),
                                          alpha=0.5, topk=100, add_tail=True)  # fmt: skip
    topk_value = aggregate_loss(topk_loss, mask, sample_weight=weight * has_teacher)
    topk_value.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    results.append(check("core top-k(100)+tail JSD runs", bool(torch.isfinite(topk_value)),
                         f"{topk_value.item():.5f} in {1e3 * (time.perf_counter() - tick):.1f} ms"))  # fmt: skip

    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    print(f"total {time.perf_counter() - started:.1f} s; {sum(results)}/{len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
