"""One-GPU checks of the verl plugin's teacher path (the ``topk_jsd`` hook, the sharded EMA), no network, no vLLM,
no verl needed: ``hook.py`` and ``teacher.py`` are loaded by path (torch + transformers + ``scsdpo_verl.core``).

    python bench/gpu_teacher_check.py                 # CUDA: the checks below at the paper's sizes (< 5 min, 1 GPU)
    python bench/gpu_teacher_check.py --device cpu --small    # the same code at toy sizes (CI runs this)

Checks, one ``[ok]`` / ``[FAIL]`` / ``[skip]`` line each (exit 1 on a failure):
1. packed teacher forward: the teacher rows of several samples packed into one sequence (position ids restart per
   row) with ``logits_to_keep`` at the response positions give the logits of one forward per row (flash-attention
   2 when installed, else sdpa), in the run's dtype;
2. alignment: a teacher row that is the student's own prompt + response, scored by the student's weights, gives a
   divergence of ~0 at every response position (off-by-one positions would not);
3. flash cross-entropy safety: with verl installed, the student's gradient through the hook is the same whether
   verl's log-probs use the flash-attn cross-entropy (``inplace_backward``, which overwrites the logits buffer in its
   backward) or not (``VERL_DISABLE_FLASH_ATTN_CE=1``): the hook copies the response rows before using them;
4. EMA on an offloaded teacher: a single-rank FSDP2 teacher with ``CPUOffloadPolicy`` (pinned, as verl builds the
   reference engine) and a student on the device; ``ema_update_sharded_`` equals the formula on every tensor;
5. cost at the paper's shape: a small random Qwen3 (2 layers) with V=151936, response 8192, teacher prompt 2048:
   peak memory and time of the student forward + hook (teacher forward, top-100 + tail JSD) + backward.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load(name: str):
    """``scsdpo_verl/verl_plugin/<name>.py`` without the package ``__init__`` (which imports verl)."""
    spec = importlib.util.spec_from_file_location(f"scsdpo_{name}", ROOT / "scsdpo_verl" / "verl_plugin" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook, teacher_lib = load("hook"), load("teacher")
RESULTS: list[tuple[str, str, str]] = []


def report(status: str, name: str, detail: str) -> None:
    RESULTS.append((status, name, detail))
    print(f"[{status}] {name}: {detail}", flush=True)


def attention() -> str:
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        return "sdpa"


def qwen3(vocab: int, layers: int, hidden: int, device, dtype, seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                         max_position_embeddings=32768, tie_word_embeddings=False)  # fmt: skip
    config._attn_implementation = attention() if device.type == "cuda" else "sdpa"
    return Qwen3ForCausalLM(config).to(device=device, dtype=dtype)


def nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def micro_batch(prompts, responses, teacher_rows, active, temperature=1.0) -> dict:
    return {
        "input_ids": nested([torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]),
        "responses": nested(responses),
        hook.TEACHER_INPUT_IDS: nested(teacher_rows),
        hook.SD_MASK: nested([torch.full((len(r),), float(a), device=r.device) for r, a in zip(responses, active,
                                                                                              strict=True)]),
        "temperature": temperature,
    }


def student_logits_packed(model, data) -> torch.Tensor:
    ids = data["input_ids"]
    positions = torch.cat([torch.arange(int(n), device=ids.values().device) for n in ids.offsets().diff()])
    return model(input_ids=ids.values()[None], position_ids=positions[None], use_cache=False).logits


def check_packed_forward(device, dtype, vocab, sizes) -> None:
    model = qwen3(vocab, 2, 128, device, dtype).eval()
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(vocab, (n,), generator=gen).to(device) for n in sizes["rows"]]
    responses = sizes["responses"]
    scorer = hook.TeacherScorer(model, chunk_rows=256)
    ids = torch.stack([torch.randperm(vocab, generator=gen)[:8] for _ in range(sum(responses))]).to(device)
    packed = scorer.logprobs(rows, responses, ids, torch.ones(sum(responses), device=device))
    expected = []
    with torch.no_grad():
        for row, r in zip(rows, responses, strict=True):
            logits = model(input_ids=row[None], use_cache=False).logits[0, len(row) - r - 1:len(row) - 1].float()
            expected.append(torch.log_softmax(logits, -1))
    expected = torch.cat(expected).gather(-1, ids)
    error = float((packed - expected).abs().max())
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-4
    report("ok" if error < tolerance else "FAIL", "packed teacher forward with logits_to_keep",
           f"{attention() if device.type == 'cuda' else 'sdpa'}, {dtype}, max |diff| {error:.2e} (tol {tolerance})")


def check_alignment(device, dtype, vocab) -> None:
    model = qwen3(vocab, 2, 128, device, dtype).eval()
    gen = torch.Generator().manual_seed(2)
    prompts = [torch.randint(vocab, (n,), generator=gen).to(device) for n in (12, 30)]
    responses = [torch.randint(vocab, (n,), generator=gen).to(device) for n in (9, 17)]
    data = micro_batch(prompts, responses, [torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)],
                       [True, True])
    settings = SimpleNamespace(topk=min(100, vocab - 1), alpha=0.5, add_tail=True, logits_chunk_rows=0)
    with torch.no_grad():
        out = hook.token_divergences(student_logits_packed(model, data), data, hook.TeacherScorer(model), settings)
    divergence = out[hook.TOKEN_DIVERGENCE][0]
    worst = float(divergence.abs().max())
    tolerance = 1e-3 if dtype == torch.bfloat16 else 1e-6
    report("ok" if worst < tolerance else "FAIL", "alignment (teacher row = student row -> divergence 0)",
           f"max divergence {worst:.2e} over {int((divergence != 0).sum())} nonzero positions (tol {tolerance})")


def check_flash_ce(device, dtype, vocab) -> None:
    if device.type != "cuda":
        report("skip", "flash cross-entropy safety", "flash-attn's cross-entropy needs CUDA")
        return
    try:
        from verl.utils.torch_functional import logprobs_from_logits
    except ImportError:
        report("skip", "flash cross-entropy safety", "verl is not installed here")
        return
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(vocab, (n,), generator=gen).to(device) for n in (20, 25)]
    responses = [torch.randint(vocab, (n,), generator=gen).to(device) for n in (40, 31)]
    teacher_model = qwen3(vocab, 2, 128, device, dtype, seed=5).eval()
    rows = [torch.cat([torch.randint(vocab, (15,), generator=gen).to(device), r]) for r in responses]
    data = micro_batch(prompts, responses, rows, [True, True])
    settings = SimpleNamespace(topk=100, alpha=0.5, add_tail=True, logits_chunk_rows=16)
    grads = []
    for disable in ("0", "1"):
        os.environ["VERL_DISABLE_FLASH_ATTN_CE"] = disable
        model = qwen3(vocab, 2, 128, device, dtype)
        logits = student_logits_packed(model, data)[0]
        div = hook.token_divergences(logits[None], data, hook.TeacherScorer(teacher_model), settings)
        labels = torch.roll(data["input_ids"].values(), -1)
        log_probs = logprobs_from_logits(logits=logits, labels=labels, inplace_backward=True)
        (div[hook.TOKEN_DIVERGENCE].sum() + 0.01 * log_probs.sum()).backward()
        grads.append(model.lm_head.weight.grad.float().clone())
    error = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
    report("ok" if error < 1e-2 else "FAIL", "flash cross-entropy safety (inplace_backward vs disabled)",
           f"relative max |grad diff| {error:.2e}")


def check_ema_offloaded(device) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29577")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (1,))
    teacher = qwen3(1024, 2, 64, device, torch.float32, seed=0)
    student = qwen3(1024, 2, 64, device, torch.float32, seed=1)
    before = {n: p.detach().float().cpu().clone() for n, p in teacher.named_parameters()}
    target = {n: p.detach().float().cpu().clone() for n, p in student.named_parameters()}
    pin = device.type == "cuda"
    for layer in teacher.model.layers:
        fully_shard(layer, mesh=mesh, offload_policy=CPUOffloadPolicy(pin_memory=pin))
    fully_shard(teacher, mesh=mesh, offload_policy=CPUOffloadPolicy(pin_memory=pin))
    for layer in student.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(student, mesh=mesh)
    teacher_device = {p.to_local().device.type for p in teacher.parameters()}
    teacher_lib.ema_update_sharded_(teacher, student, 0.05)
    after = {n: p.to_local().detach().float().cpu() for n, p in teacher.named_parameters()}
    error = max(float((after[n] - (before[n] + 0.05 * (target[n] - before[n]))).abs().max()) for n in after)
    report("ok" if error < 1e-6 else "FAIL", "EMA on a CPU-offloaded FSDP2 teacher",
           f"teacher shards on {sorted(teacher_device)}, student on {device.type}, max |error| {error:.2e}")


def check_cost(device, dtype, vocab, response, teacher_prompt, prompt) -> None:
    student = qwen3(vocab, 2, 256, device, dtype, seed=0)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    prompts = [torch.randint(vocab, (prompt,), generator=gen).to(device)]
    responses = [torch.randint(vocab, (response,), generator=gen).to(device)]
    rows = [torch.cat([torch.randint(vocab, (teacher_prompt,), generator=gen).to(device), responses[0]])]
    data = micro_batch(prompts, responses, rows, [True])
    settings = SimpleNamespace(topk=100, alpha=0.5, add_tail=True, logits_chunk_rows=1024)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    logits = student_logits_packed(student, data)
    out = hook.token_divergences(logits, data, hook.TeacherScorer(teacher, chunk_rows=1024), settings)
    out[hook.TOKEN_DIVERGENCE].sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    finite = bool(torch.isfinite(student.lm_head.weight.grad).all())
    report("ok" if finite else "FAIL", "cost of one micro-batch (student fwd + hook + backward)",
           f"V={vocab}, response {response}, teacher prompt {teacher_prompt}, {dtype}: {seconds:.2f} s, "
           f"peak {peak:.2f} GiB (2-layer model: the logits dominate)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="toy sizes (CPU, CI)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --small", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    vocab = 512 if args.small else 151936
    check_packed_forward(device, dtype, vocab, {"rows": [40, 25, 60], "responses": [10, 7, 30]})
    check_alignment(device, dtype, vocab)
    check_flash_ce(device, dtype, vocab)
    check_ema_offloaded(device)
    if args.small:
        check_cost(device, dtype, vocab, response=64, teacher_prompt=32, prompt=16)
    else:
        check_cost(device, dtype, vocab, response=8192, teacher_prompt=2048, prompt=512)
    failed = [name for status, name, _ in RESULTS if status == "FAIL"]
    print(f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks ok or skipped" + (f"; FAILED: {failed}" if failed
                                                                                     else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
