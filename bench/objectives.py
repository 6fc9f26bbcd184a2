"""Benchmark: cost of the SC-SDPO weights relative to the self-distillation loss they scale.

The paper calls the pass-rate weights a zero-cost byproduct of on-policy rollouts; this measures it.
One run times both on the same machine and prints the ratio (bar: weights / loss < 0.01).

    python bench/objectives.py                      # B=32, T=256, V=32768, top-k 100 (~1 GB of logits per side)
    python bench/objectives.py --vocab 4096 --repeats 3   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scsdpo_verl.core import aggregate_loss, group_pass_rates, sc_sdpo_weights, self_distillation_loss


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.tokens, args.vocab)
    student = torch.randn(shape, generator=gen).requires_grad_(True)
    teacher = torch.randn(shape, generator=gen)
    mask = torch.ones(args.batch, args.tokens)
    success = torch.rand(args.batch, generator=gen) > 0.5
    group_ids = [i // args.group_size for i in range(args.batch)]
    active = torch.rand(args.batch, generator=gen) > 0.2

    def weights() -> torch.Tensor:
        return sc_sdpo_weights(group_pass_rates(success, group_ids), active=active)

    def loss_forward_backward() -> None:
        student.grad = None
        per_token, _ = self_distillation_loss(student, teacher, mask, topk=args.topk)
        aggregate_loss(per_token, mask, sample_weight=weights_value).backward()

    weights_value = weights()
    loss_s = _median_seconds(loss_forward_backward, args.repeats)
    weights_s = _median_seconds(weights, max(args.repeats, 50), warmup=5)
    gib = student.numel() * student.element_size() / 2**30
    print(f"B={args.batch} T={args.tokens} V={args.vocab} top-k={args.topk} threads={args.threads} "
          f"({gib:.2f} GiB of logits per side)")
    print(f"divergence loss fwd+bwd  median {loss_s * 1e3:10.2f} ms  ({args.repeats} runs)")
    print(f"pass-rate weights        median {weights_s * 1e3:10.4f} ms")
    ratio = weights_s / loss_s
    print(f"ratio weights / loss = {ratio:.2e}  (bar < 1e-2: {'PASS' if ratio < 1e-2 else 'FAIL'})")


if __name__ == "__main__":
    main()
