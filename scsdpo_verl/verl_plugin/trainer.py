"""``scsdpo_sync``: verl 0.9.1's synchronous v1 trainer with SDPO / SC-SDPO steps (``register_trainer``).

Per step, on top of ``PPOTrainerSync`` (rollout, reward, old log-probs as usual):

1. ``_compute_ref_log_prob`` (the reference slot, which SDPO uses for its teacher) reads ``uid``, rewards,
   chat messages and responses from TransferQueue, computes pass rates by ``uid`` and SC weights, picks
   demonstrations and builds teacher prompts (``scsdpo_verl.core``), and lays out one teacher row per rollout
   (teacher prompt + the student's own response tokens). With ``teacher_signal: topk_jsd`` the rows go onto the
   student's keys (``teacher_input_ids``) for the actor's loss, which runs the teacher inside verl's
   distillation hook; with ``sampled_token`` they are scored here by the reference engine (the EMA teacher) and
   ``teacher_log_probs`` goes onto the student's keys. Either way ``sc_weight`` and ``self_distillation_mask``
   go there too, and one JSON line per step (per-sample uid, score, pass rate, mask, weight) is appended to
   ``<trainer.default_local_dir>/sd_steps.jsonl``;
2. advantages as configured (GRPO; unused by the SDPO losses, kept for logging and for ``grpo`` runs);
3. ``_update_actor`` runs verl's actor update with the hook switched on (``topk_jsd``) and the on-policy flag,
   then the EMA teacher step, skipped when the update's gradient norm is not finite (as the reference).

``batch.py`` holds the pure logic; the CPU end-to-end tests (``tests/verl_plugin/test_end_to_end.py``) run
this trainer for real through verl.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import ray
import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.single_controller.ray.base import ResourcePoolManager
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.metric import reduce_metrics
from verl.utils.py_functional import rename_dict
from verl.workers.utils.padding import response_from_nested

from .batch import (
    broadcast_per_sample,
    build_teacher_rows,
    encode_teacher_prompts,
    plan_metrics,
    plan_self_distillation,
    sequence_scores,
)
from .losses import ON_POLICY, SC_WEIGHT, SD_MASK, TEACHER_INPUT_IDS, TEACHER_LOG_PROBS
from .settings import SELF_DISTILLATION_LOSS_MODES, SelfDistillationPolicyLossConfig
from .worker import ScSdpoWorker

logger = logging.getLogger(__name__)

TRAINER_NAME = "scsdpo_sync"
TEACHER_KEY_SUFFIX = "__sdpo_teacher"
STEP_LOG = "sd_steps.jsonl"
# test hook: fail right after the checkpoint of this global step is written (a crash the resume must survive)
CRASH_AFTER_SAVE_ENV = "SCSDPO_CRASH_AFTER_SAVE"


def _as_list(value: Any) -> list:
    """TransferQueue non-tensor column (NonTensorStack / list / array) -> Python list."""
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _nested(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def _feedback(extra_fields: dict | None) -> str | None:
    """Environment feedback string from a rollout's ``extra_fields['reward_extra_info']['feedback']``."""
    info = (extra_fields or {}).get("reward_extra_info") or {}
    feedback = info.get("feedback")
    return feedback if isinstance(feedback, str) and feedback else None


def check_supported(config: Any, settings: SelfDistillationPolicyLossConfig) -> None:
    """Refuse, naming the key, the configurations the teacher path would compute wrong or not at all."""
    actor = config.actor_rollout_ref.actor
    for role in ("actor", "ref"):
        strategy = config.actor_rollout_ref[role].strategy
        if strategy not in ("fsdp", "fsdp2"):
            raise ValueError(f"scsdpo_sync: actor_rollout_ref.{role}.strategy={strategy!r}; the EMA teacher lives in "
                             "verl's FSDP reference engine (use fsdp2 or fsdp)")
    if config.actor_rollout_ref.actor.strategy != config.actor_rollout_ref.ref.strategy:
        raise ValueError("scsdpo_sync: actor_rollout_ref.actor.strategy and .ref.strategy must match (the EMA "
                         "update pairs the two engines' shards)")
    if actor.use_dynamic_bsz:
        raise ValueError("scsdpo_sync: actor_rollout_ref.actor.use_dynamic_bsz must be false (micro-batches are cut "
                         "on the student's length only, not the teacher rows')")
    if settings.teacher_signal != "topk_jsd":
        return
    fsdp_config = actor.get("fsdp_config", {})
    if fsdp_config.get("ulysses_sequence_parallel_size", 1) != 1:
        raise ValueError("teacher_signal topk_jsd: actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size "
                         "must be 1 (the hook would see a sequence-parallel slice of the student's logits)")
    if fsdp_config.get("pad_to_length", False):
        raise ValueError("teacher_signal topk_jsd: actor_rollout_ref.actor.fsdp_config.pad_to_length must be false")
    if config.actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ValueError("teacher_signal topk_jsd: actor_rollout_ref.model.use_fused_kernels must be false (fused "
                         "kernels never materialise the logits the divergence needs)")


@register_trainer(TRAINER_NAME)
class ScSdpoTrainer(PPOTrainerSync):
    """Synchronous trainer for ``actor.policy_loss.loss_mode`` in {sdpo, sc_sdpo}."""

    def __init__(self, config):
        super().__init__(config)
        settings = omega_conf_to_dataclass(config.actor_rollout_ref.actor.policy_loss)
        if not isinstance(settings, SelfDistillationPolicyLossConfig):
            raise ValueError(
                "trainer.v1.trainer_mode=scsdpo_sync needs actor_rollout_ref.actor.policy_loss._target_="
                "scsdpo_verl.verl_plugin.settings.SelfDistillationPolicyLossConfig"
            )
        if settings.loss_mode not in SELF_DISTILLATION_LOSS_MODES:
            raise ValueError(f"scsdpo_sync: policy_loss.loss_mode must be one of {SELF_DISTILLATION_LOSS_MODES}")
        if config.actor_rollout_ref.actor.use_kl_loss or config.algorithm.get("use_kl_in_reward", False):
            raise ValueError("SDPO keeps its teacher in the reference worker: disable use_kl_loss/use_kl_in_reward")
        check_supported(config, settings)
        self.sd_settings = settings
        # The reference worker holds the teacher even though no KL term asks for it.
        self.use_reference_policy = True

    # ---------------------------------------------------------------- workers
    def _init_resource_pool_mgr(self):
        """Stock pools, but the actor role is ``actor_rollout_ref`` served by ``ScSdpoWorker``."""
        super()._init_resource_pool_mgr()
        if Role.Actor in self.role_worker_mapping:
            raise NotImplementedError("scsdpo_sync needs the hybrid engine (actor, rollout and teacher colocated)")
        old_role = Role.ActorRollout if Role.ActorRollout in self.role_worker_mapping else Role.ActorRolloutRef
        pool = self.mapping.pop(old_role)
        del self.role_worker_mapping[old_role]
        self.role_worker_mapping[Role.ActorRolloutRef] = ray.remote(ScSdpoWorker)
        self.mapping[Role.ActorRolloutRef] = pool
        self.resource_pool_manager = ResourcePoolManager(
            resource_pool_spec=self.resource_pool_manager.resource_pool_spec, mapping=self.mapping
        )

    def _setup(self):
        super()._setup()
        if self.ref_in_actor:
            raise NotImplementedError("scsdpo_sync with LoRA (ref = adapter-free actor) cannot hold an EMA teacher")

    # ---------------------------------------------------------------- teacher
    def _encode_messages(self, messages: list[dict]) -> list[int]:
        """Chat template with generation prompt (data.apply_chat_template_kwargs, e.g. enable_thinking)."""
        kwargs = dict(self.config.data.get("apply_chat_template_kwargs", None) or {})
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _compute_ref_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """The teacher side of the step: plan, teacher rows, weights and masks (see the module docstring)."""
        settings = self.sd_settings
        fields = ["uid", "rm_scores", "response_mask", "responses", "raw_prompt"]
        if settings.include_environment_feedback:
            fields.append("extra_fields")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        responses = list(data["responses"].unbind())
        response_lengths = [int(n) for n in data["response_mask"].offsets().diff().tolist()]
        response_texts = self.tokenizer.batch_decode([r.tolist() for r in responses], skip_special_tokens=True)
        feedbacks = [_feedback(x) for x in _as_list(data["extra_fields"])] if "extra_fields" in fields else None

        uids = [str(u) for u in _as_list(data["uid"])]
        scores = sequence_scores(list(data["rm_scores"].unbind()))
        plan = plan_self_distillation(
            uids,
            scores,
            _as_list(data["raw_prompt"]),
            response_texts,
            success_threshold=settings.success_threshold,
            weight_exponent=settings.weight_exponent(),
            weight_normalize=settings.sc_normalize,
            exclude_self=settings.exclude_self,
            strip_thinking=settings.strip_thinking,
            feedbacks=feedbacks,
            include_feedback=settings.include_environment_feedback,
        )
        is_padding = torch.tensor([bool(tag.get("is_padding", False)) for tag in batch.tags])
        plan.has_teacher &= ~is_padding
        plan.weight = torch.where(plan.has_teacher, plan.weight, torch.zeros_like(plan.weight))
        prompt_ids, truncated = encode_teacher_prompts(
            plan.teacher_messages,
            self._encode_messages,
            max_length=settings.max_teacher_prompt_length,
            side=settings.teacher_prompt_truncation,
        )
        per_sample = {
            SC_WEIGHT: _nested(broadcast_per_sample(plan.weight, response_lengths)),
            SD_MASK: _nested(broadcast_per_sample(plan.has_teacher.float(), response_lengths)),
        }
        if settings.teacher_signal == "topk_jsd":
            # the actor's loss runs the teacher on these rows; rows without a teacher are never scored, so
            # they carry one padding token instead of a full-length copy
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            rows = [
                torch.cat([torch.as_tensor(p, dtype=torch.int64), r.to(torch.int64).reshape(-1)]) if active
                else torch.tensor([pad], dtype=torch.int64)
                for p, r, active in zip(prompt_ids, responses, plan.has_teacher.tolist(), strict=True)
            ]
            per_sample[TEACHER_INPUT_IDS] = _nested(rows)
        else:
            per_sample[TEACHER_LOG_PROBS] = self._score_teacher_rows(batch, prompt_ids, responses, response_lengths)
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                        fields=TensorDict(per_sample, batch_size=len(batch.keys)))
        metrics.update(plan_metrics(plan, truncated, uids=uids, padding=is_padding))
        self._log_step(batch.keys, uids, plan, scores, prompt_ids)
        return batch

    def _score_teacher_rows(self, batch: KVBatchMeta, prompt_ids: list[list[int]], responses: list[torch.Tensor],
                            response_lengths: list[int]) -> torch.Tensor:
        """``sampled_token``: the teacher's log-probs of the response tokens, from the reference engine.

        The rows live under side keys for one forward pass and are cleared on every path."""
        rows = build_teacher_rows(prompt_ids, responses)
        teacher_keys = [f"{key}{TEACHER_KEY_SUFFIX}" for key in batch.keys]
        teacher_tags = [
            {**tag, "prompt_len": len(p), "seq_len": len(p) + r}
            for tag, p, r in zip(batch.tags, prompt_ids, response_lengths, strict=True)
        ]
        try:
            tq.kv_batch_put(
                keys=teacher_keys,
                partition_id=batch.partition_id,
                fields=TensorDict({k: _nested(v) for k, v in rows.items()}, batch_size=len(teacher_keys)),
                tags=teacher_tags,
            )
            teacher_batch = KVBatchMeta(
                keys=teacher_keys,
                tags=teacher_tags,
                partition_id=batch.partition_id,
                extra_info={
                    "calculate_entropy": False,
                    "compute_loss": False,
                    "temperature": self.config.actor_rollout_ref.rollout.temperature,
                },
            )
            output = self.ref_policy_wg.compute_ref_log_prob(teacher_batch)
            assert len(output) == len(teacher_batch)
            scored = tq.kv_batch_get(
                keys=teacher_keys, partition_id=batch.partition_id, select_fields=["log_probs", "response_mask"]
            )
            return response_from_nested(scored["log_probs"], scored["response_mask"])
        finally:
            tq.kv_clear(keys=teacher_keys, partition_id=batch.partition_id)

    def _log_step(self, keys: list[str], uids: list[str], plan: Any, scores: torch.Tensor,
                  prompt_ids: list[list[int]]) -> None:
        """One JSON line per step: what each sample counted for (for analysis and for the end-to-end tests)."""
        record = {
            "step": int(self.global_steps),
            "keys": list(keys),
            "uid": uids,
            "score": scores.tolist(),
            "pass_rate": plan.pass_rate.tolist(),
            "has_teacher": plan.has_teacher.tolist(),
            "weight": plan.weight.tolist(),
            "teacher_prompt_length": [len(p) for p in prompt_ids],
            "sc_exponent": self.sd_settings.weight_exponent(),
            "sc_normalize": self.sd_settings.sc_normalize,
        }
        directory = self.config.trainer.default_local_dir
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, STEP_LOG), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save_checkpoint(self):
        super()._save_checkpoint()
        crash_step = os.environ.get(CRASH_AFTER_SAVE_ENV)
        if crash_step and int(crash_step) == self.global_steps:
            raise RuntimeError(f"{CRASH_AFTER_SAVE_ENV}={crash_step}: simulated crash after the step's checkpoint")

    # ---------------------------------------------------------------- update
    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """verl's actor update with the distillation hook on (``topk_jsd``) and the on-policy flag, then
        ``theta_T <- (1 - tau) theta_T + tau theta`` in every worker when the gradient norm is finite.

        The update's ``extra_info`` is verl's own (same keys as ``PPOTrainer._update_actor``; a test pins the
        two side by side), except that ``distillation_use_topk`` asks the engine to call our loss with the
        student's logits, which verl's stock method sets only for its on-policy distillation."""
        actor = self.config.actor_rollout_ref.actor
        rollout_n = self.config.actor_rollout_ref.rollout.n
        mini_batch_size = actor.ppo_mini_batch_size * rollout_n
        on_policy = actor.ppo_epochs == 1 and actor.ppo_mini_batch_size >= self.config.data.train_batch_size
        batch.extra_info.update({
            "calculate_entropy": bool(actor.calculate_entropy or actor.entropy_coeff != 0.0),
            "distillation_use_topk": self.sd_settings.teacher_signal == "topk_jsd",
            "distillation_only": False,
            "global_batch_size": mini_batch_size,
            "mini_batch_size": mini_batch_size,
            "epochs": actor.ppo_epochs,
            "seed": actor.data_loader_seed,
            "dataloader_kwargs": {"shuffle": actor.shuffle},
            "temperature": self.config.actor_rollout_ref.rollout.temperature,
            ON_POLICY: on_policy,
        })
        output = self.actor_rollout_wg.update_actor(batch)
        actor_metrics = rename_dict(output["metrics"], "actor/")
        actor_metrics["perf/mfu/actor"] = actor_metrics.pop("actor/mfu")
        actor_metrics = reduce_metrics(actor_metrics)
        tokens = actor_metrics.get("actor/sd/num_tokens", 0.0)
        for name in ("divergence", "is_ratio"):  # token-weighted means over the whole update
            total = actor_metrics.get(f"actor/sd/{name}_sum")
            if total is not None:
                actor_metrics[f"actor/sd/{name}_mean"] = float(total) / tokens if tokens else 0.0
        metrics.update(actor_metrics)

        grad_norm = float(metrics.get("actor/grad_norm", float("nan")))
        updated = math.isfinite(grad_norm)
        if updated:  # the reference moves its teacher only after an optimizer step that happened
            self.actor_rollout_wg.update_teacher_ema(self.sd_settings.teacher_update_rate)
        metrics["sd/teacher_ema_rate"] = self.sd_settings.teacher_update_rate
        metrics["sd/teacher_updated"] = float(updated)
        return batch
