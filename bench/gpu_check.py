"""GPU check of the objectives and the verl plugin's teacher-row logic, without verl or vLLM.

    python bench/gpu_check.py            # on a CUDA machine (plain torch + transformers)

The device machines here have torch and transformers but not verl (whose import pulls Ray and friends), so this
runs what can run there: (1) every core objective on CUDA against a float64 CPU reference, forward and gradient;
(2) the plugin's batch logic (``verl_plugin/batch.py``, loaded without the verl-importing package ``__init__``):
pass rates, SC weights, teacher rows = teacher prompt + the student's response tokens, on a tiny random Qwen3 on
CUDA, checking that response positions line up (a row without a teacher scored by the student itself reproduces
the student's log-probs exactly); (3) the cost of the SC weights against the divergence loss at GPU scale.
Prints one line per check; exits non-zero on a mismatch.
"""

from __future__ import annotations

import copy
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from scsdpo_verl.core import (
    aggregate_loss,
    ema_update_,
    group_pass_rates,
    sampled_token_distillation_loss,
    sc_sdpo_weights,
    self_distillation_loss,
    token_logprobs,
)

_spec = importlib.util.spec_from_file_location(
    "scsdpo_plugin_batch", Path(__file__).resolve().parents[1] / "scsdpo_verl/verl_plugin/batch.py"
)
batch = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = batch  # dataclasses look their module up
_spec.loader.exec_module(batch)

RESULTS: list[bool] = []


def check(name: str, ok: bool, detail: str) -> None:
    RESULTS.append(bool(ok))
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def timed(fn, repeats: int = 5) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def core_against_float64(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(4, 64, 4096, generator=gen, dtype=torch.float64) * 3
    teacher = torch.randn(4, 64, 4096, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(4, 64, generator=gen) > 0.2
    for alpha, topk in ((0.5, 100), (0.0, 100), (1.0, 100), (0.5, None)):
        ref_leaf = student.clone().requires_grad_(True)
        ref, _ = self_distillation_loss(ref_leaf, teacher, mask, alpha=alpha, topk=topk)
        aggregate_loss(ref, mask).backward()
        gpu_leaf = student.float().to(device).requires_grad_(True)
        got, _ = self_distillation_loss(gpu_leaf, teacher.float().to(device), mask.to(device), alpha=alpha, topk=topk)
        aggregate_loss(got, mask.to(device)).backward()
        loss_err = (got.double().cpu() - ref).abs().max().item()
        grad_err = (gpu_leaf.grad.double().cpu() - ref_leaf.grad).abs().max().item()
        check(
            f"self_distillation_loss alpha={alpha} topk={topk} cuda fp32 vs cpu fp64",
            loss_err < 1e-4 and grad_err < 1e-6,
            f"max |loss err| {loss_err:.1e}, |grad err| {grad_err:.1e}",
        )
    bf16, _ = self_distillation_loss(
        student.to(device, torch.bfloat16), teacher.to(device, torch.bfloat16), mask.to(device)
    )
    ref, _ = self_distillation_loss(student, teacher, mask)
    check(
        "bf16 logits computed in fp32",
        bf16.dtype == torch.float32 and (bf16.double().cpu() - ref).abs().max().item() < 0.05,
        f"max |err| {(bf16.double().cpu() - ref).abs().max():.3f}",
    )


def plugin_rows_on_tiny_qwen3(device: torch.device) -> None:
    uids = ["q0"] * 4 + ["q1"] * 4 + ["q2"] * 4
    scores = torch.tensor([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float32)
    messages = [
        [{"role": "system", "content": "Answer with <answer>X</answer>."}, {"role": "user", "content": f"question {u}"}]
        for u in uids
    ]
    texts = [f"<answer>{'ABCD'[i % 4]}</answer>" for i in range(len(uids))]
    plan = batch.plan_self_distillation(
        uids, scores, messages, texts, success_threshold=0.5, weight_exponent=0.5, weight_normalize="batch_mean"
    )
    check(
        "pass rates by uid", plan.pass_rate.tolist() == [0.5] * 4 + [0.25] * 4 + [1.0] * 4, f"{plan.pass_rate.tolist()}"
    )
    expected = sc_sdpo_weights(group_pass_rates(scores > 0.5, uids), active=plan.has_teacher)
    check("SC weights == core", torch.equal(plan.weight, expected), f"{[round(w, 3) for w in plan.weight.tolist()]}")

    def encode(msgs):  # stand-in tokenizer: bytes into a 512 vocab
        text = "".join(f"{m['role']}:{m['content']}|" for m in msgs) + "assistant:"
        return [b % 500 + 10 for b in text.encode()]

    gen = torch.Generator().manual_seed(1)
    responses = [torch.randint(10, 512, (n,), generator=gen) for n in torch.randint(4, 24, (12,), generator=gen)]
    teacher_prompts, _ = batch.encode_teacher_prompts(plan.teacher_messages, encode, max_length=10240, side="right")
    teacher_rows = batch.build_teacher_rows(teacher_prompts, responses)["input_ids"]
    student_rows = batch.build_teacher_rows([encode(m) for m in messages], responses)["input_ids"]
    config = Qwen3Config(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    student = Qwen3ForCausalLM(config).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)

    def response_logprobs(model, rows):
        out = []
        for row, response in zip(rows, responses, strict=True):
            ids = row.to(device).unsqueeze(0)
            logits = model(input_ids=ids).logits[0, -response.numel() - 1 : -1]
            out.append(token_logprobs(logits, response.to(device)))
        return out

    with torch.no_grad():
        teacher_lp = response_logprobs(teacher, teacher_rows)
        student_lp_ref = response_logprobs(student, student_rows)
    inactive = [i for i, t in enumerate(plan.has_teacher.tolist()) if not t]
    err = max((teacher_lp[i] - student_lp_ref[i]).abs().max().item() for i in inactive)
    check(
        "teacher rows align with the student's response positions",
        err < 1e-5,
        f"{len(inactive)} rows without a teacher: max |diff| {err:.1e}",
    )
    student_lp = response_logprobs(student, student_rows)
    width = max(r.numel() for r in responses)
    pad = lambda xs: torch.stack([torch.nn.functional.pad(x, (0, width - x.numel())) for x in xs])  # noqa: E731
    mask = pad([torch.ones(r.numel(), device=device) for r in responses]).bool()
    per_token, _ = sampled_token_distillation_loss(
        pad(student_lp), pad(teacher_lp), mask & plan.has_teacher.to(device)[:, None]
    )
    loss = aggregate_loss(per_token, mask, sample_weight=plan.weight.to(device))
    loss.backward()
    grad = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    torch.optim.AdamW(student.parameters(), lr=1e-3).step()
    check(
        "sampled-token SC-SDPO loss + backward on CUDA",
        bool(torch.isfinite(loss) and torch.isfinite(grad)),
        f"loss {loss.item():.4f}, grad norm {grad.item():.4f}",
    )
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    ema_update_(teacher, student, 0.05)
    sp = dict(student.named_parameters())
    err = max(
        (p - (0.95 * before[n] + 0.05 * sp[n].detach())).abs().max().item() for n, p in teacher.named_parameters()
    )
    check("EMA update on CUDA", err < 1e-6, f"max |err| {err:.1e}")


def weights_vs_loss_cost(device: torch.device) -> None:
    """Weights computed where verl computes them (host tensors in the driver: rewards and uids live on the CPU)
    and, for information, from device tensors (a dozen tiny kernels plus host syncs for the input checks)."""
    shapes = ((32, 256, 32768), (8, 1024, 151936), (8, 2048, 151936)) if device.type == "cuda" else ((8, 32, 4096),)
    for b, t, v in shapes:
        student = torch.randn(b, t, v, device=device).requires_grad_(True)
        teacher = torch.randn(b, t, v, device=device)
        mask = torch.ones(b, t, device=device)
        success_host = torch.rand(b) > 0.5
        success_device = success_host.to(device)
        uids = [i // 8 for i in range(b)]

        def loss_fn():
            student.grad = None
            per_token, _ = self_distillation_loss(student, teacher, mask, topk=100)
            aggregate_loss(per_token, mask).backward()

        loss_s = timed(loss_fn)
        host_s = timed(lambda: sc_sdpo_weights(group_pass_rates(success_host, uids)), repeats=50)
        device_s = timed(lambda: sc_sdpo_weights(group_pass_rates(success_device, uids)), repeats=50)
        check(
            f"weights/loss cost B={b} T={t} V={v}",
            host_s / loss_s < 0.01,
            f"loss fwd+bwd {loss_s * 1e3:.2f} ms; weights on host {host_s * 1e3:.3f} ms (ratio {host_s / loss_s:.2e}),"
            f" on device {device_s * 1e3:.3f} ms (ratio {device_s / loss_s:.2e}, information only)",
        )
        student = teacher = None  # free before the next shape
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> int:
    if not torch.cuda.is_available() and "--cpu" not in sys.argv:
        print("CUDA is not available (pass --cpu for a logic-only dry run)")
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    core_against_float64(device)
    plugin_rows_on_tiny_qwen3(device)
    weights_vs_loss_cost(device)
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"total {time.perf_counter() - started:.1f} s")
    print(f"{sum(RESULTS)} passed, {len(RESULTS) - sum(RESULTS)} failed")
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
