"""Calibrate the CPU default's base models: warm-start a tiny model, then measure it on the VALIDATION split.

    python bench/base_competence.py --model qwen3-tiny --out /tmp/base --steps 1400 --drills 600
    python bench/base_competence.py --model qwen3-tiny --out /tmp/base --eval-only   # re-measure a saved one
    python bench/base_competence.py --model qwen3-tiny --out /tmp/base --steps 1400 --drills 600 --probe-only
        # only the drills, then the copy check's probe (models.copy_probe_loss), then stop

Prints, per synthetic task: the mean pass rate at T=1 over k samples, per level, the share of mixed questions
(0 < successes < k), the pass rate with the worked solution in the self-teacher's prompt (what SDPO's teacher
sees) and its gain, and on failed rollouts the mass the teacher and the student put on the correct token where
the rollout leaves the worked solution (``models.teacher_signal``). It writes the same as JSON to
``OUT/competence.json``. Validation questions are disjoint from train and test (``tasks.synthetic.split_of``):
tune warm-start settings on these numbers, never on the test split the workflow reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import time
from pathlib import Path

import torch

from scsdpo_verl.local import models
from scsdpo_verl.tasks import synthetic


def measure(model, tokenizer, task: str, questions: int, k: int, seed: int) -> dict:
    """``models.competence_report`` on ``questions`` validation questions of ``task``."""
    rows = synthetic.generate(task, questions, seed, split="validation")
    return models.competence_report(model, tokenizer, rows, k=k, seed=seed)


class _AfterDrills(Exception):
    pass


def probe_after_drills(args: argparse.Namespace) -> float:
    """The copy check's first probe of the warm start ``args`` describe: its drills run (the schedule of all
    ``args.steps``), the probe is read from the check's log line, and the warm start stops there."""
    probes: list[float] = []

    class Probes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.search(r"copy check .*: ([0-9.]+) nats", record.getMessage())
            if found:
                probes.append(float(found.group(1)))

    def stop(step: int) -> None:
        if step > args.drills:
            raise _AfterDrills

    models.logger.addHandler(Probes())
    with contextlib.suppress(_AfterDrills):
        models.make_base(args.model, args.out, sft_rows_per_task=args.rows, sft_steps=args.steps,
                         sft_batch=args.batch, sft_lr=args.lr, teacher_fraction=args.teacher_fraction,
                         copy_drill_steps=args.drills, bf16={"true": True, "false": False}.get(args.bf16, args.bf16),
                         eval_questions=0, number_tokens=args.number_tokens, copy_target_loss=float("inf"),
                         seed=args.seed, threads=args.threads, on_step_end=stop)
    if not probes:
        raise RuntimeError("the warm start logged no 'copy check' line (models.warm_start's format changed?)")
    return probes[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(models.TINY_MODELS), default="qwen3-tiny")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=800, help="warm-start steps, drills included")
    parser.add_argument("--drills", type=int, default=0, help="copy-drill steps (the first ones)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2.5e-3)
    parser.add_argument("--teacher-fraction", type=float, default=0.5)
    parser.add_argument("--rows", type=int, default=2500, help="warm-start rows per task")
    parser.add_argument("--bf16", choices=("auto", "true", "false"), default="auto")
    parser.add_argument("--questions", type=int, default=24, help="validation questions per task")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--number-tokens", action="store_true",
                        help="numbers as tokens of their own (models.train_tokenizer), not one token per digit")
    parser.add_argument("--lookup-drills", type=float, default=0.0,
                        help="share of drill examples (from a third of the drills on) that are option lookups")
    parser.add_argument("--copy-target", type=float, default=None,
                        help="copy check after the drills: probe loss target (nats per copied token); default: off")
    parser.add_argument("--max-extra-drills", type=int, default=0, help="extra drill steps the copy check may add")
    parser.add_argument("--rehearsal", type=float, default=0.0,
                        help="share of each batch after the drills that is demonstration-slot copy drills")
    parser.add_argument("--probe-only", action="store_true",
                        help="stop after the drills and print the copy check's probe (nats per copied token)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    started = time.time()
    if args.probe_only:
        print(f"copy probe after {args.drills} drills: {probe_after_drills(args):.3f} nats per copied token")
        return
    if not args.eval_only:
        models.make_base(args.model, out, sft_rows_per_task=args.rows, sft_steps=args.steps, sft_batch=args.batch,
                         sft_lr=args.lr, teacher_fraction=args.teacher_fraction, copy_drill_steps=args.drills,
                         bf16={"true": True, "false": False}.get(args.bf16, args.bf16), eval_questions=0,
                         number_tokens=args.number_tokens, lookup_drill_fraction=args.lookup_drills,
                         copy_target_loss=args.copy_target, drill_rehearsal_fraction=args.rehearsal,
                         max_extra_drill_steps=args.max_extra_drills,
                         seed=args.seed, threads=args.threads)
    warm_seconds = time.time() - started
    torch.set_num_threads(args.threads)
    model, tokenizer = models.load_pretrained(out)
    result = {"args": vars(args), "warm_start_seconds": round(warm_seconds, 1), "tasks": {}}
    for task in models.SYNTHETIC_TASKS:
        report = measure(model, tokenizer, task, args.questions, args.k, args.seed + 777)
        result["tasks"][task] = report
        signal = report["teacher_signal_on_failures"]
        levels = " ".join(f"{v:.2f}" for v in report["mean_pass_rate_by_difficulty"].values())
        print(f"{task}: pass rate {report['mean_pass_rate']:.3f} (levels {levels}), mixed "
              f"{report['mixed_fraction']:.2f}; teacher format {report['teacher_format_mean_pass_rate']:.3f} "
              f"(gain {report['teacher_format_gain']:+.3f}); on {signal['failed_rollouts']} failed rollouts "
              f"teacher {signal['teacher_mass_on_correct_token'] or 0:.3f} vs student "
              f"{signal['student_mass_on_correct_token'] or 0:.3f} on the correct token; the teacher doubts "
              f"{report['teacher_signal_on_successes']['doubted_rollout_fraction'] or 0:.2f} of "
              f"{report['teacher_signal_on_successes']['successful_rollouts']} successful rollouts", flush=True)
    result["seconds"] = round(time.time() - started, 1)
    (out / "competence.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
