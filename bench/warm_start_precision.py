"""Warm-start step time under bf16 autocast (eager attention) against fp32 (sdpa) on this CPU, one process.

    python bench/warm_start_precision.py --model-path results/models/qwen3-tiny/base [--threads 1] [--rounds 3]

``base_model.bf16: auto`` is fp32 on every CPU (``models.choose_bf16``); this measures whether bf16 would be the
faster one here (an AMX CPU is the case to try: ``bf16: true`` then, at the price of another base). The model is a
fresh tiny model of the base's architecture, with the base's tokenizer. It trains on both synthetic tasks' worked
solutions (batch 32, length-bucketed as in the warm start). Each round runs ``--steps`` steps in each precision,
from the same initial weights, in alternating order. The first ``--skip`` steps of a run are not counted. The script
prints the median step time per precision and their ratio. Run it with nothing else on the machine: the ratio is
what to read, not the absolute times.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch

from scsdpo_verl.local import models
from scsdpo_verl.local.data import load_rows


def step_times(model, tokenizer, rows, *, bf16: bool, steps: int, seed: int) -> list[float]:
    """Seconds of each warm-start step of a copy of ``model``."""
    stamps = [time.perf_counter()]
    models.warm_start(copy.deepcopy(model), tokenizer, rows, steps=steps, seed=seed, bf16=bf16,
                      teacher_fraction=0.5, log_every=0, progress_bar=False,
                      on_step_end=lambda step: stamps.append(time.perf_counter()))
    return [b - a for a, b in itertools.pairwise(stamps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True, help="a tiny base checkpoint (its tokenizer and architecture)")
    parser.add_argument("--architecture", choices=tuple(models.TINY_MODELS), default=None,
                        help="default: from the checkpoint's config (qwen3 -> qwen3-tiny, olmo3 -> olmo3-tiny)")
    parser.add_argument("--steps", type=int, default=24, help="steps per run")
    parser.add_argument("--skip", type=int, default=4, help="first steps of each run not counted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=512, help="training rows per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's base jobs use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, tokenizer = models.load_pretrained(args.model_path)
    name = args.architecture or f"{base.config.model_type}-tiny"
    model = models.build_tiny_model(name, tokenizer, seed=0)
    rows = [row for task in models.SYNTHETIC_TASKS for row in load_rows(task, args.rows, 0, "train")]
    choice, reason = models.choose_bf16("auto")
    print(f"# {name}, torch threads {args.threads}; base_model.bf16 auto here: {reason}")
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for round_index in range(args.rounds):
        order = ("fp32", "bf16") if round_index % 2 == 0 else ("bf16", "fp32")
        for precision in order:
            measured = step_times(model, tokenizer, rows, bf16=precision == "bf16", steps=args.steps,
                                  seed=round_index)
            times[precision].extend(measured[args.skip:])
    medians = {precision: statistics.median(values) for precision, values in times.items()}
    for precision, values in times.items():
        print(f"{precision}: median {medians[precision]:.3f} s/step over {len(values)} steps "
              f"(min {min(values):.3f}, max {max(values):.3f})")
    faster = "bf16" if medians["bf16"] < medians["fp32"] else "fp32"
    print(f"ratio bf16 / fp32 = {medians['bf16'] / medians['fp32']:.2f}; faster here: {faster}; "
          f"auto chooses: {'bf16' if choice else 'fp32'}")


if __name__ == "__main__":
    main()
