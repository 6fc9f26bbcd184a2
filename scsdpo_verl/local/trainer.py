"""GRPO, SDPO and SC-SDPO on a small causal LM, on CPU: one file, read top to bottom.

One step (``train_step``):
  1. rollouts   Q questions x n samples from the policy (KV-cache sampling, T=1), scored by the task scorer
  2. per sample pass rates p_q over each question's n rollouts; GRPO advantages, or the teacher prompts and weights
  3. objective  per micro-batch of ``micro_batch_size`` rollouts (all at once when 0): teacher-forced logits of the
                policy on (prompt, own response), the loss below, backward (gradients accumulate)
     grpo       A_i = r_i - mean_group(r)                      core.grpo_advantages
                l_it = max(-A_i rho_it, -A_i clip(rho_it, 1-eps_lo, 1+eps_hi)),  rho = pi/pi_old = 1 on-policy
     sdpo       teacher = EMA(policy) re-prompted with a successful sibling's answer (core.select_demonstrations,
                core.build_teacher_prompt), scored on the student's own response tokens;
                l_it = JSD_alpha(pi_S || pi_T) on top-k + tail, times min(rho, is_clip)   core.self_distillation_loss
                samples without a teacher get weight 0
     sc_sdpo    sdpo with sample weights w_i = [p_q(1-p_q)]^exponent / Z     core.group_pass_rates, sc_sdpo_weights
     loss = core.aggregate_loss(l, response_mask, sample_weight=w), seq-mean-token-mean by default (each
                sample's token-mean counts once, as in the reference's micro-batch 1), divided by the whole
                batch's sequence count (core.loss_normalizer) so the micro-batch gradients sum to the
                full-batch gradient
  4. update     AdamW (linear warmup, constant), grad-norm clip; then teacher <- (1-tau) teacher + tau policy
                (both skipped when the gradient norm is not finite)
All formulas live in ``scsdpo_verl.core``; this file only wires them.

The run (``train``): validation before the first step (step 0), every ``val_every`` steps and at the last step;
each step's record (``metrics.jsonl``) carries its time ``timing_s/step`` (validation and checkpointing excluded)
and their running sum ``timing_s/step_cumulative`` (the time axis of the papers' budgets), and goes to verl's own
``verl.utils.tracking.Tracking`` with ``cfg.logger`` (console, tensorboard in ``<run_dir>/tensorboard``, wandb, ...).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from scsdpo_verl.core import (
    aggregate_loss,
    build_teacher_prompts,
    clipped_policy_loss,
    ema_update_,
    entropy_from_logits,
    group_pass_rates,
    grpo_advantages,
    loss_normalizer,
    sc_sdpo_weights,
    select_demonstrations,
    self_distillation_loss,
    token_logprobs,
)
from scsdpo_verl.eval.majority import exact_majority_accuracy

from . import checkpoint
from .config import ConfigError, TrainConfig
from .data import (
    decode_responses,
    encode_chat,
    generation_budget_warning,
    last_user_text,
    load_rows,
    read_rows,
    score_responses,
    with_last_user_message,
)
from .models import load_pretrained
from .rollout import left_pad, response_logits, sample

# keys that may differ between a run and its resumption (they do not change the math of completed steps;
# micro_batch_size only the float summation order, so an out-of-memory run can resume with smaller ones)
RESUMABLE_KEYS = {"resume", "progress_bar", "total_steps", "save_every", "keep_last", "val_every",
                  "micro_batch_size", "logger", "project_name", "experiment_name"}
STEP_TIME, CUMULATIVE_STEP_TIME = "timing_s/step", "timing_s/step_cumulative"
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# seeds and data order: every random stream is a function of (seed, step), so a resumed run needs only
# the step and the data position to continue exactly (checkpoints hold no RNG state)
# ----------------------------------------------------------------------------------------------------------
def step_seed(seed: int, step: int, stream: int) -> int:
    """The seed of one (step, stream); streams: 0 = training rollouts, 1 = validation, 2 = the global torch
    RNG during the step's update (dropout, for a model that has any)."""
    return seed * 1_000_003 + step * 16 + stream


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A torch generator for one (step, stream)."""
    return torch.Generator().manual_seed(step_seed(seed, step, stream))


def question_indices(position: int, count: int, num_rows: int, seed: int) -> list[int]:
    """Rows ``position .. position+count-1`` of an endless stream: epoch e is permutation(seed + e)."""
    indices = []
    for p in range(position, position + count):
        epoch, offset = divmod(p, num_rows)
        indices.append(int(np.random.RandomState(seed + epoch).permutation(num_rows)[offset]))
    return indices


def warmup_then_constant(warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: (s+1)/warmup for the first ``warmup_steps`` optimizer steps, then 1 (verl's constant)."""
    return lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def make_optimizer(cfg: TrainConfig, policy) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the policy, with a linear warm-up then a constant learning rate."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_constant(cfg.warmup_steps))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp_min(1))


class TokenMeans:
    """Metrics averaged over the whole batch's tokens, accumulated micro-batch by micro-batch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, value_sum: float, count: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value_sum
        self.counts[name] = self.counts.get(name, 0.0) + count

    def add_sum(self, name: str, value: float) -> None:  # a total, not a mean
        self.add(name, value, 0.0)

    def result(self) -> dict[str, float]:
        return {name: total / self.counts[name] if self.counts[name] else total
                for name, total in self.sums.items()}


def keep(trace: dict[str, Any] | None, *, rows: bool = False, **values: Any) -> None:
    """Copy a step's intermediate values into ``trace`` (when given; the golden-step tests read them).
    ``rows=True``: one micro-batch's rows, concatenated with the earlier micro-batches' rows."""
    if trace is None:
        return
    for name, value in values.items():
        if isinstance(value, dict):
            value = {key: tensor.detach().clone() for key, tensor in value.items()}
        elif isinstance(value, torch.Tensor):
            value = value.detach().clone()
            if rows and name in trace:
                value = torch.cat([trace[name], value])
        trace[name] = value


class PromptCache:
    """Chat-templated prompt ids per question (rendered once)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids = tokenizer, {}

    def __call__(self, key: Any, messages) -> list[int]:
        if key not in self.ids:
            self.ids[key] = encode_chat(self.tokenizer, messages)
        return self.ids[key]


# ----------------------------------------------------------------------------------------------------------
# one RL step
# ----------------------------------------------------------------------------------------------------------
def train_step(cfg: TrainConfig, policy, teacher, optimizer, scheduler, tokenizer, rows: list[dict],
               row_keys: list[Any], prompt_cache: PromptCache, generator: torch.Generator,
               trace: dict[str, Any] | None = None) -> dict[str, float]:
    """One optimizer step on ``len(rows)`` questions x ``cfg.rollouts_per_question`` rollouts; returns metrics.
    ``trace`` (a dict), when given, receives the intermediate values named in the ``keep`` calls."""
    metrics: dict[str, float] = {}
    n = cfg.rollouts_per_question
    t_start = time.perf_counter()

    # 1. rollouts: sample i belongs to group (question) i // n
    group_ids = [q for q in range(len(rows)) for _ in range(n)]
    batch_rows = [rows[q] for q in group_ids]
    prompt_ids, prompt_mask = left_pad([prompt_cache(row_keys[q], rows[q]["prompt"]) for q in group_ids],
                                       tokenizer.pad_token_id)
    policy.eval()
    rollout = sample(policy, prompt_ids, prompt_mask, max_new_tokens=cfg.max_new_tokens,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                     temperature=cfg.temperature, top_p=cfg.top_p, generator=generator)
    response_ids, response_mask = rollout.response_ids, rollout.response_mask
    texts = decode_responses(tokenizer, response_ids, response_mask)
    scores = score_responses(batch_rows, texts)
    rewards = torch.tensor([float(s["score"]) for s in scores])
    success = rewards >= cfg.success_threshold
    t_rollout = time.perf_counter()

    # 2. per-sample quantities over the whole batch: pass rates, then GRPO advantages or teacher prompts + weights
    pass_rate = group_pass_rates(success, group_ids)
    keep(trace, texts=texts, rewards=rewards, success=success, pass_rate=pass_rate)
    if cfg.method == "grpo":
        advantages = grpo_advantages(rewards, group_ids, norm_by_std=cfg.norm_adv_by_std)[:, None]  # [B, 1]
        keep(trace, advantages=advantages)
        metrics["critic/advantages/mean"] = masked_mean(advantages.expand_as(response_mask), response_mask)
        metrics["critic/advantages/max"] = float(advantages.max())
        metrics["critic/advantages/min"] = float(advantages.min())
    else:
        # the teacher sees a successful sibling's answer (never the sample's own) in its user message
        demonstrations = select_demonstrations(group_ids, success, texts, exclude_self=True, strip_thinking=True)
        teacher_texts, has_teacher = build_teacher_prompts(
            [last_user_text(row["prompt"]) for row in batch_rows], demonstrations,
            [s.get("feedback") for s in scores], include_feedback=cfg.include_feedback)
        if cfg.method == "sdpo":
            weight = has_teacher.float()
        else:  # sc_sdpo: w = [p(1-p)]^exponent normalised over the samples that have a teacher
            weight = sc_sdpo_weights(pass_rate, exponent=cfg.exponent, normalize=cfg.normalize, active=has_teacher)
        keep(trace, demonstrations=demonstrations, teacher_texts=teacher_texts, has_teacher=has_teacher,
             weight=weight)
        metrics["self_distillation/reprompt_sample_fraction"] = float(has_teacher.float().mean())
        if has_teacher.any():
            metrics["sc/weight_mean"] = float(weight[has_teacher].mean())
            metrics["sc/weight_max"] = float(weight[has_teacher].max())
            metrics["sc/weight_min"] = float(weight[has_teacher].min())
    # each micro-batch divides by the whole batch's token (or sequence) count, so the accumulated gradient
    # is the full-batch gradient
    normalizer = loss_normalizer(response_mask, cfg.loss_agg_mode)

    # 3. student (and teacher) forward, loss, backward: micro-batch by micro-batch (gradient accumulation)
    policy.train()
    token_means, loss_total, t_teacher, t_backward = TokenMeans(), 0.0, 0.0, 0.0
    batch_size = len(group_ids)
    micro = cfg.micro_batch_size or batch_size
    for mb in (slice(i, i + micro) for i in range(0, batch_size, micro)):
        mask = response_mask[mb]
        # log pi(y_t | x, y_<t) on the sampled tokens, with gradient
        student_logits = response_logits(policy, prompt_ids[mb], prompt_mask[mb], response_ids[mb], mask,
                                         cfg.temperature)
        logprobs = token_logprobs(student_logits, response_ids[mb])
        old_logprobs = logprobs.detach()  # one update per batch (on-policy): pi_old = pi, so rho = 1 exactly
        if cfg.method == "grpo":
            per_token_loss, pg_clipfrac = clipped_policy_loss(
                logprobs, old_logprobs, advantages[mb], clip_ratio_low=cfg.clip_ratio_low,
                clip_ratio_high=cfg.clip_ratio_high)
            loss = aggregate_loss(per_token_loss, mask, mode=cfg.loss_agg_mode, normalizer=normalizer)
            token_means.add("actor/pg_clipfrac", float((pg_clipfrac * mask).sum()), float(mask.sum()))
        else:
            t0 = time.perf_counter()
            # teacher logits on the student's own response tokens; rows without a teacher keep the student's
            # (detached) logits, a placeholder that the zero weight removes from the loss
            teacher_logits = student_logits.detach().clone()
            first = mb.start
            active = has_teacher[mb].nonzero().squeeze(-1)
            if active.numel() > 0:
                teacher_prompts = [
                    encode_chat(tokenizer, with_last_user_message(batch_rows[first + i]["prompt"],
                                                                  teacher_texts[first + i]))
                    for i in active.tolist()
                ]
                teacher_ids, teacher_mask = left_pad(teacher_prompts, tokenizer.pad_token_id)
                with torch.no_grad():
                    teacher_logits[active] = response_logits(teacher, teacher_ids, teacher_mask,
                                                             response_ids[mb][active], mask[active], cfg.temperature)
            t_teacher += time.perf_counter() - t0
            per_token_loss, sd_metrics = self_distillation_loss(
                student_logits, teacher_logits, mask * has_teacher[mb, None], alpha=cfg.alpha, topk=cfg.topk,
                add_tail=cfg.add_tail, old_logprobs=old_logprobs, logprobs=logprobs, is_clip=cfg.is_clip)
            loss = aggregate_loss(per_token_loss, mask, sample_weight=weight[mb], mode=cfg.loss_agg_mode,
                                  normalizer=normalizer)
            sd_tokens = sd_metrics.pop("sd/num_tokens")
            token_means.add_sum("sd/num_tokens", sd_tokens)
            for name, value in sd_metrics.items():  # masked means over this micro-batch's teacher tokens
                token_means.add(name, value * sd_tokens, sd_tokens)
            keep(trace, rows=True, teacher_logits=teacher_logits)
        keep(trace, rows=True, student_logits=student_logits, per_token_loss=per_token_loss)
        t0 = time.perf_counter()
        loss.backward()
        t_backward += time.perf_counter() - t0
        loss_total += float(loss.detach())
        tokens = float(mask.sum())
        token_means.add("actor/entropy", float((entropy_from_logits(student_logits.detach()) * mask).sum()), tokens)
        token_means.add("training/rollout_probs_diff_mean",
                        float(((rollout.logprobs[mb].exp() - logprobs.detach().exp()).abs() * mask).sum()), tokens)

    # 4. update: AdamW step with clipped gradients, then the EMA teacher follows the policy
    t0 = time.perf_counter()
    keep(trace, grad={name: p.grad for name, p in policy.named_parameters() if p.grad is not None})
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
    updated = bool(torch.isfinite(grad_norm))
    if updated:  # a non-finite gradient skips the step and the EMA (verl and the SDPO reference do the same)
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if teacher is not None and updated:
        ema_update_(teacher, policy, rate=cfg.ema_rate)
    t_update = t_backward + time.perf_counter() - t0
    metrics.update(token_means.result())

    # metrics (verl's names where verl has one)
    lengths = response_mask.sum(-1)
    group_successes = success.view(len(rows), n).sum(-1)
    metrics.update({
        "critic/score/mean": float(rewards.mean()),
        "critic/score/max": float(rewards.max()),
        "critic/score/min": float(rewards.min()),
        "actor/pg_loss": loss_total,
        "actor/grad_norm": float(grad_norm),
        "actor/update_skipped": float(not updated),
        "actor/lr": float(scheduler.get_last_lr()[0]),
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/min": float(lengths.min()),
        "response_length/clip_ratio": float((~(response_ids == tokenizer.eos_token_id).any(-1)).float().mean()),
        "prompt_length/mean": float(prompt_mask.sum(-1).float().mean()),
        "sc/pass_rate_mean": float(pass_rate.mean()),
        "self_distillation/success_group_fraction": float((group_successes > 0).float().mean()),
        "self_distillation/success_sample_fraction": float(success.float().mean()),
        "timing_s/gen": t_rollout - t_start,
        "timing_s/teacher": t_teacher,
        "timing_s/update_actor": t_update,
        STEP_TIME: time.perf_counter() - t_start,
    })
    for k in range(n + 1):  # questions with k successes out of n
        metrics[f"sc/pass_rate_hist/{k}"] = float((group_successes == k).sum())
    return metrics


# ----------------------------------------------------------------------------------------------------------
# validation: k samples per question -> mean@k and maj@k (majority vote on the scorer's `pred`)
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(cfg: TrainConfig, policy, tokenizer, rows: list[dict], prompt_cache: PromptCache,
             generator: torch.Generator, batch_questions: int = 16) -> dict[str, float]:
    k = cfg.val_k
    policy.eval()
    per_source: dict[str, dict[str, list[float]]] = {}
    lengths: list[float] = []
    for start in range(0, len(rows), batch_questions):
        chunk = rows[start:start + batch_questions]
        prompt_ids, prompt_mask = left_pad(
            [prompt_cache(("val", start + q), chunk[q]["prompt"]) for q in range(len(chunk)) for _ in range(k)],
            tokenizer.pad_token_id)
        rollout = sample(policy, prompt_ids, prompt_mask, max_new_tokens=cfg.max_new_tokens,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         temperature=cfg.val_temperature, top_p=cfg.val_top_p, generator=generator)
        scores = score_responses([row for row in chunk for _ in range(k)],
                                 decode_responses(tokenizer, rollout.response_ids, rollout.response_mask))
        lengths.extend(rollout.response_mask.sum(-1).tolist())
        for q, row in enumerate(chunk):
            group = scores[q * k:(q + 1) * k]
            accs = [float(s["acc"]) for s in group]
            stats = per_source.setdefault(row["data_source"], {"mean": [], "maj": []})
            stats["mean"].append(sum(accs) / k)
            stats["maj"].append(exact_majority_accuracy([s.get("pred") for s in group], accs))
    metrics = {}
    for source, stats in per_source.items():
        metrics[f"val-core/{source}/acc/mean@{k}"] = sum(stats["mean"]) / len(stats["mean"])
        metrics[f"val-core/{source}/acc/maj@{k}/mean"] = sum(stats["maj"]) / len(stats["maj"])
    metrics["val-aux/response_length/mean"] = sum(lengths) / len(lengths)
    return metrics


# ----------------------------------------------------------------------------------------------------------
# the run: set-up, (resume), loop, log, checkpoint
# ----------------------------------------------------------------------------------------------------------
def _check_resume_config(run_dir: Path, cfg: TrainConfig) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text())
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_KEYS and key in saved and saved[key] != value:
            raise ConfigError(f"cannot resume {run_dir}: config key '{key}' is {value!r} but the run used "
                              f"{saved[key]!r}")


def _truncate_log(path: Path, last_step: int) -> float:
    """Drop log records after ``last_step`` (steps done after the checkpoint by a killed process); returns the
    step time the kept records add up to (where the resumed run's cumulative step time continues from)."""
    if not path.is_file():
        return 0.0
    kept = [json.loads(line) for line in path.read_text().splitlines() if line]
    kept = [record for record in kept if record["step"] <= last_step]
    path.write_text("".join(json.dumps(record) + "\n" for record in kept))
    return sum(record.get(STEP_TIME, 0.0) for record in kept)


def open_tracker(cfg: TrainConfig, run_dir: Path):
    """verl's ``Tracking`` with the backends of ``cfg.logger``, built as verl's trainer builds it (project and
    experiment name); TensorBoard writes to ``<run_dir>/tensorboard`` (verl reads ``TENSORBOARD_DIR``). None when
    ``cfg.logger`` is empty (then verl need not be installed)."""
    if not cfg.logger:
        return None
    try:
        from verl.utils.tracking import Tracking
    except ImportError as err:
        raise ConfigError(f"config key 'logger' {cfg.logger} needs verl's tracking (pip install "
                          f"'scsdpo_verl[verl]'), or set logger=[]: {err}") from err

    saved = os.environ.get("TENSORBOARD_DIR")
    os.environ["TENSORBOARD_DIR"] = str(run_dir / "tensorboard")
    try:
        experiment = cfg.experiment_name or f"{cfg.method}-{cfg.task}-seed{cfg.seed}"
        # verl's backends read config["trainer"] (wandb's proxy) and log the whole config as run parameters
        config = {"trainer": {"logger": list(cfg.logger), "project_name": cfg.project_name,
                              "experiment_name": experiment}, "train": cfg.to_dict()}
        return Tracking(cfg.project_name, experiment, default_backend=list(cfg.logger), config=config)
    finally:
        if saved is None:
            os.environ.pop("TENSORBOARD_DIR", None)
        else:
            os.environ["TENSORBOARD_DIR"] = saved


def train(cfg: TrainConfig, on_step_end: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns a summary. ``on_step_end(step, metrics)`` is a test hook."""
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "metrics.jsonl"

    # data: the stream of training questions and the fixed validation questions
    train_rows = read_rows(cfg.train_path) if cfg.train_path else load_rows(cfg.task, cfg.train_size, cfg.seed, "train")
    val_rows = (read_rows(cfg.val_path) if cfg.val_path else load_rows(cfg.task, cfg.val_size, cfg.seed, "test"))
    val_rows = val_rows[:cfg.val_questions]

    # policy, teacher (EMA copy; GRPO has none), optimizer, scheduler; or all of them from a checkpoint
    resume_from = checkpoint.latest(run_dir) if cfg.resume else None
    if cfg.resume:
        _check_resume_config(run_dir, cfg)
    elif checkpoint.latest(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds checkpoints; pass resume=true or use a new run_dir")
    policy, tokenizer = load_pretrained(resume_from / "policy" if resume_from else cfg.model_path)
    # a rollout cut at max_new_tokens has no answer: a budget shorter than the worked solutions caps the pass rate
    if warning := generation_budget_warning(tokenizer, train_rows, cfg.max_new_tokens, "max_new_tokens",
                                            cfg.train_path or f"{cfg.task} (train)"):
        logger.warning(warning)
    teacher = None
    if cfg.method != "grpo":
        teacher = load_pretrained(resume_from / "teacher")[0] if resume_from else copy.deepcopy(policy)
        teacher.eval().requires_grad_(False)
    optimizer, scheduler = make_optimizer(cfg, policy)
    start_step, data_position, step_time = 0, 0, 0.0
    if resume_from is not None:
        state = checkpoint.load_state(resume_from)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        start_step, data_position = state.step, state.data_position
        step_time = _truncate_log(log_path, start_step)
    else:
        log_path.write_text("")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    prompt_cache = PromptCache(tokenizer)
    history: list[dict[str, Any]] = []
    tracker = open_tracker(cfg, run_dir)

    def log(record: dict[str, Any]) -> None:
        history.append(record)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if tracker is not None:
            tracker.log(data={k: v for k, v in record.items() if k != "step"}, step=record["step"])

    if start_step == 0:
        log({"step": 0, CUMULATIVE_STEP_TIME: 0.0,
             **validate(cfg, policy, tokenizer, val_rows, prompt_cache, step_generator(cfg.seed, 0, 1))})

    bar = tqdm(range(start_step, cfg.total_steps), initial=start_step, total=cfg.total_steps,
               disable=not cfg.progress_bar, desc=f"{cfg.method} {cfg.task}", dynamic_ncols=True)
    for step_index in bar:
        step = step_index + 1  # verl counts global steps from 1
        indices = question_indices(data_position, cfg.questions_per_step, len(train_rows), cfg.seed)
        data_position += cfg.questions_per_step
        torch.manual_seed(step_seed(cfg.seed, step, 2))  # the global stream (dropout) restarts at every step
        metrics = train_step(cfg, policy, teacher, optimizer, scheduler, tokenizer, [train_rows[i] for i in indices],
                             indices, prompt_cache, step_generator(cfg.seed, step, 0))
        metrics["training/global_step"] = step
        metrics["training/epoch"] = data_position / len(train_rows)
        step_time += metrics[STEP_TIME]
        metrics[CUMULATIVE_STEP_TIME] = step_time
        if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.total_steps:
            metrics.update(validate(cfg, policy, tokenizer, val_rows, prompt_cache, step_generator(cfg.seed, step, 1)))
        log({"step": step, **metrics})
        bar.set_postfix(score=f"{metrics['critic/score/mean']:.3f}", loss=f"{metrics['actor/pg_loss']:.4f}")
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.total_steps:
            state = checkpoint.TrainerState(step=step, data_position=data_position, optimizer=optimizer.state_dict(),
                                            scheduler=scheduler.state_dict())
            checkpoint.save(run_dir, policy=policy, teacher=teacher, tokenizer=tokenizer, state=state,
                            keep_last=cfg.keep_last)
        if on_step_end is not None:
            on_step_end(step, metrics)
    bar.close()
    if tracker is not None:
        tracker.finish()  # (after an exception, verl's Tracking finishes itself when collected)
    if not history and log_path.is_file():  # resumed after the last checkpoint: the log holds the final record
        history = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    summary = {"run_dir": str(run_dir), "steps": cfg.total_steps, "final": history[-1] if history else {},
               "final_checkpoint": str(checkpoint.latest(run_dir))}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
