"""Median RL step time of the local trainer (grpo, sdpo, sc_sdpo) and of TRL 1.16's SDPOTrainer, one process.

    python bench/step_time.py --model-path models/qwen3-tiny/base [--task synthetic_science] [--steps 6]

Same model, data and batch (Q questions x n rollouts, T=1, max new tokens) for all four. TRL runs with
matching settings: distillation_mode="topk_logits", top-k 100 + tail, alpha 0.5, EMA teacher (rate 0.05),
IS cap 2, fp32, no gradient checkpointing. The first step of each run is a warm-up and is not counted;
methods run in interleaved rounds so background load hits them alike. CPU timings on a shared machine are
noisy (+-10 % or worse): read ratios, not absolute numbers, and rerun when the machine is busy.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from scsdpo_verl.local.config import TrainConfig
from scsdpo_verl.local.data import load_rows
from scsdpo_verl.local.models import load_pretrained
from scsdpo_verl.local.trainer import (
    PromptCache,
    question_indices,
    step_generator,
    train,
    train_step,
    warmup_then_constant,
)

METHODS = ("grpo", "sdpo", "sc_sdpo")


def our_step_times(method: str, args: argparse.Namespace, work: Path, round_index: int) -> tuple[list[dict], float]:
    """Per-step timing metrics of one run (warm-up step dropped) and its mean reprompt fraction."""
    cfg = TrainConfig(
        method=method, model_path=args.model_path, task=args.task, run_dir=str(work / f"{method}-{round_index}"),
        seed=args.seed, threads=args.threads, total_steps=args.steps + 1, questions_per_step=args.questions,
        rollouts_per_question=args.rollouts, max_new_tokens=args.max_new_tokens, train_size=256, val_size=1,
        val_questions=1, val_k=1, val_every=0, save_every=0, lr=args.lr, progress_bar=False,
    )
    records: list[dict] = []
    train(cfg, on_step_end=lambda step, metrics: records.append(metrics))
    times = [{k: v for k, v in r.items() if k.startswith("timing_s/") or k == "response_length/mean"}
             for r in records[1:]]
    reprompt = statistics.mean(r.get("self_distillation/reprompt_sample_fraction", 0.0) for r in records)
    return times, reprompt


def paired_step_times(args: argparse.Namespace, work: Path) -> dict[str, list[dict]]:
    """Step metrics of every method stepping from the *same* weights on the *same* batch, ``--paired`` rounds.

    Each round restores the initial policy, teacher and a fresh optimizer before each method and seeds the
    rollout generator alike, so sdpo and sc_sdpo sample identical rollouts and differ only in the weights:
    their per-round time ratio isolates the cost of the SC weights from response-length drift. Round 0 warms
    up and is dropped; the method order rotates every round.
    """
    cfg = TrainConfig(model_path=args.model_path, task=args.task, run_dir=str(work / "paired"), seed=args.seed,
                      threads=args.threads, questions_per_step=args.questions, rollouts_per_question=args.rollouts,
                      max_new_tokens=args.max_new_tokens, lr=args.lr, progress_bar=False)
    torch.set_num_threads(args.threads)
    policy, tokenizer = load_pretrained(args.model_path)
    teacher = copy.deepcopy(policy).eval().requires_grad_(False)
    initial_policy, initial_teacher = copy.deepcopy(policy.state_dict()), copy.deepcopy(teacher.state_dict())
    rows = load_rows(args.task, 256, args.seed, "train")
    prompt_cache = PromptCache(tokenizer)
    records: dict[str, list[dict]] = {m: [] for m in METHODS}
    for round_index in range(args.paired + 1):
        indices = question_indices(round_index * args.questions, args.questions, len(rows), args.seed)
        shift = round_index % len(METHODS)
        for method in METHODS[shift:] + METHODS[:shift]:
            policy.load_state_dict(initial_policy)
            teacher.load_state_dict(initial_teacher)
            optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                          weight_decay=cfg.weight_decay)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_constant(cfg.warmup_steps))
            metrics = train_step(dataclasses.replace(cfg, method=method), policy, None if method == "grpo" else teacher,
                                 optimizer, scheduler, tokenizer, [rows[i] for i in indices], indices, prompt_cache,
                                 step_generator(args.seed, round_index, 0))
            if round_index > 0:
                records[method].append(metrics)
    return records


def trl_step_times(args: argparse.Namespace, work: Path) -> tuple[list[float], float]:
    """Seconds between consecutive ``on_step_end`` of TRL's SDPOTrainer (first step dropped)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore")
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    from scsdpo_verl.local.data import load_rows
    from scsdpo_verl.tasks import compute_score

    rows = load_rows(args.task, 256, args.seed, "train")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "ground_truth": r["reward_model"]["ground_truth"],
                                  "data_source": r["data_source"]} for r in rows])

    def task_reward(completions, ground_truth, data_source, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(compute_score(s, t, g)["score"]) for t, g, s in zip(texts, ground_truth, data_source,
                                                                           strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.logs: list[dict] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs:
                self.logs.append(dict(logs))

    config = SDPOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=args.questions * args.rollouts,
        gradient_accumulation_steps=1, num_generations=args.rollouts, max_completion_length=args.max_new_tokens,
        max_steps=args.steps + 1, learning_rate=args.lr, lr_scheduler_type="constant", temperature=1.0, beta=0.0,
        distillation_mode="topk_logits", distillation_topk=100, distillation_add_tail=True, distillation_alpha=0.5,
        distillation_is_clip=2.0, teacher_model_kind="ema", teacher_update_rate=0.05, success_reward_threshold=0.5,
        dont_reprompt_on_self_success=True, bf16=False, gradient_checkpointing=False, use_cpu=True, seed=args.seed,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )
    clock = StepClock()
    trainer = SDPOTrainer(model=args.model_path, reward_funcs=task_reward, args=config, train_dataset=dataset,
                          callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is disabled
    torch.set_num_threads(args.threads)
    trainer.train()
    times = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]
    reprompt = [log["self_distillation/reprompt_sample_fraction"] for log in clock.logs
                if "self_distillation/reprompt_sample_fraction" in log]
    return times, statistics.mean(reprompt) if reprompt else float("nan")


def sc_weight_overhead_s(batch: int, rollouts: int, repeats: int = 200) -> float:
    """Median seconds of the only extra work of sc_sdpo over sdpo: pass rates and weights for one batch."""
    from scsdpo_verl.core import group_pass_rates, sc_sdpo_weights

    group_ids = [i // rollouts for i in range(batch)]
    success = torch.rand(batch, generator=torch.Generator().manual_seed(0)) < 0.4
    active = torch.ones(batch, dtype=torch.bool)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        sc_sdpo_weights(group_pass_rates(success, group_ids), exponent=0.5, normalize="batch_mean", active=active)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--task", default="synthetic_science")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (plus one warm-up step)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats of grpo, sdpo, sc_sdpo")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paired", type=int, default=12,
                        help="rounds of the paired measurement (all methods from the same state and batch)")
    parser.add_argument("--skip-trl", action="store_true")
    args = parser.parse_args()

    times: dict[str, list[dict]] = {m: [] for m in METHODS}
    reprompt: dict[str, list[float]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_index in range(args.rounds):
            for method in METHODS:
                step_times, fraction = our_step_times(method, args, work, round_index)
                times[method] += step_times
                reprompt[method].append(fraction)
        paired = paired_step_times(args, work) if args.paired else {}
        trl = trl_step_times(args, work) if not args.skip_trl else ([], float("nan"))

    def med(method: str, key: str = "timing_s/step") -> float:
        return statistics.median(r[key] for r in times[method])

    median = {m: med(m) for m in METHODS}
    print(f"# {args.model_path} | task {args.task} | {args.questions}x{args.rollouts} rollouts, "
          f"max {args.max_new_tokens} new tokens | torch threads {args.threads} | "
          f"{args.steps} timed steps x {args.rounds} round(s)")
    print(f"{'method':<10} {'median s/step':>14} {'min':>7} {'max':>7} {'reprompt frac':>14} "
          f"{'gen':>6} {'teacher':>8} {'update':>7} {'resp len':>9}")
    for method in METHODS:
        steps = [r["timing_s/step"] for r in times[method]]
        print(f"{method:<10} {median[method]:>14.3f} {min(steps):>7.3f} {max(steps):>7.3f} "
              f"{statistics.mean(reprompt[method]):>14.3f} {med(method, 'timing_s/gen'):>6.2f} "
              f"{med(method, 'timing_s/teacher'):>8.2f} {med(method, 'timing_s/update_actor'):>7.2f} "
              f"{med(method, 'response_length/mean'):>9.1f}")
    if trl[0]:
        print(f"{'trl_sdpo':<10} {statistics.median(trl[0]):>14.3f} {min(trl[0]):>7.3f} {max(trl[0]):>7.3f} "
              f"{trl[1]:>14.3f}")
    overhead = sc_weight_overhead_s(args.questions * args.rollouts, args.rollouts)
    print(f"ratio sc_sdpo/sdpo = {median['sc_sdpo'] / median['sdpo']:.3f}   (bar <= 1.01; the SC weights themselves "
          f"cost {overhead * 1e3:.3f} ms = {overhead / median['sdpo']:.1e} of an sdpo step, the rest is noise and "
          f"response-length drift)")
    print(f"ratio sdpo/grpo    = {median['sdpo'] / median['grpo']:.3f}   (bar <= 1.5)")
    if paired:
        step = {m: [r["timing_s/step"] for r in paired[m]] for m in METHODS}
        same = all(a["response_length/mean"] == b["response_length/mean"]
                   for a, b in zip(paired["sdpo"], paired["sc_sdpo"], strict=True))
        print(f"paired ({args.paired} rounds, every method from the same weights and batch; identical rollouts "
              f"for sdpo and sc_sdpo: {same}): median step grpo {statistics.median(step['grpo']):.3f} s, "
              f"sdpo {statistics.median(step['sdpo']):.3f} s, sc_sdpo {statistics.median(step['sc_sdpo']):.3f} s")
        print(f"paired ratio sc_sdpo/sdpo = "
              f"{statistics.median(a / b for a, b in zip(step['sc_sdpo'], step['sdpo'], strict=True)):.3f}   "
              f"(median of per-round ratios; bar <= 1.01)")
        print(f"paired ratio sdpo/grpo    = "
              f"{statistics.median(a / b for a, b in zip(step['sdpo'], step['grpo'], strict=True)):.3f}   (bar <= 1.5)")
    if trl[0]:
        print(f"ratio ours sdpo / TRL SDPO = {median['sdpo'] / statistics.median(trl[0]):.3f}   (bar <= 1.0)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
