"""``scsdpo_sync``: verl 0.9.1's synchronous v1 trainer with SDPO / SC-SDPO steps (``register_trainer``).

Per step, on top of ``PPOTrainerSync`` (rollout, reward, old log-probs as usual):

1. ``_compute_ref_log_prob`` (the reference slot, which SDPO uses for its teacher) reads ``uid``, rewards,
   chat messages and responses from TransferQueue, computes pass rates by ``uid`` and SC weights, picks
   demonstrations and builds teacher prompts (``scsdpo_verl.core``), writes one teacher row per rollout
   (teacher prompt + the student's own response tokens) under a side key, scores those rows with the
   reference engine (the EMA teacher) and writes ``teacher_log_probs``, ``sc_weight`` and
   ``self_distillation_mask`` back onto the student's rows;
2. advantages as configured (GRPO; unused by the SDPO losses, kept for logging and for ``grpo`` runs);
3. ``_update_actor`` runs verl's update (the worker's ``scsdpo_actor_loss``), then the EMA teacher step.

Nothing here runs on CPU (verl has no CPU training engine); ``batch.py`` holds the logic that is tested.
"""

from __future__ import annotations

import logging
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
from verl.workers.utils.padding import response_from_nested

from .batch import (
    broadcast_per_sample,
    build_teacher_rows,
    encode_teacher_prompts,
    plan_metrics,
    plan_self_distillation,
    sequence_scores,
)
from .losses import SC_WEIGHT, SD_MASK, TEACHER_LOG_PROBS
from .settings import SELF_DISTILLATION_LOSS_MODES, SelfDistillationPolicyLossConfig
from .worker import ScSdpoWorker

logger = logging.getLogger(__name__)

TRAINER_NAME = "scsdpo_sync"
TEACHER_KEY_SUFFIX = "__sdpo_teacher"


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
        """Teacher log-probs of the student's responses under the teacher prompts (see module docstring)."""
        settings = self.sd_settings
        fields = ["uid", "rm_scores", "response_mask", "responses", "raw_prompt"]
        if settings.include_environment_feedback:
            fields.append("extra_fields")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        responses = list(data["responses"].unbind())
        response_lengths = [int(n) for n in data["response_mask"].offsets().diff().tolist()]
        response_texts = self.tokenizer.batch_decode([r.tolist() for r in responses], skip_special_tokens=True)
        feedbacks = [_feedback(x) for x in _as_list(data["extra_fields"])] if "extra_fields" in fields else None

        plan = plan_self_distillation(
            [str(u) for u in _as_list(data["uid"])],
            sequence_scores(list(data["rm_scores"].unbind())),
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
        rows = build_teacher_rows(prompt_ids, responses)

        # Teacher rows live under side keys for one forward pass of the reference (teacher) engine.
        teacher_keys = [f"{key}{TEACHER_KEY_SUFFIX}" for key in batch.keys]
        teacher_tags = [
            {**tag, "prompt_len": len(p), "seq_len": len(p) + r}
            for tag, p, r in zip(batch.tags, prompt_ids, response_lengths, strict=True)
        ]
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
        teacher_log_probs = response_from_nested(scored["log_probs"], scored["response_mask"])
        tq.kv_clear(keys=teacher_keys, partition_id=batch.partition_id)

        tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict(
                {
                    TEACHER_LOG_PROBS: teacher_log_probs,
                    SC_WEIGHT: _nested(broadcast_per_sample(plan.weight, response_lengths)),
                    SD_MASK: _nested(broadcast_per_sample(plan.has_teacher.float(), response_lengths)),
                },
                batch_size=len(batch.keys),
            ),
        )
        metrics.update(plan_metrics(plan, truncated))
        return batch

    # ---------------------------------------------------------------- update
    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """verl's actor update, then ``theta_T <- (1 - tau) theta_T + tau theta`` in every worker."""
        batch = super()._update_actor(batch, metrics)
        self.actor_rollout_wg.update_teacher_ema(self.sd_settings.teacher_update_rate)
        metrics["sd/teacher_ema_rate"] = self.sd_settings.teacher_update_rate
        return batch
