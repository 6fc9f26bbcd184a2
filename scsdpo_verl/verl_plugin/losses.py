"""verl policy-loss modes ``sdpo`` and ``sc_sdpo``, and the actor loss that feeds them.

verl's registered policy losses see only ``(old_log_prob, log_prob, advantages, response_mask, ...)``
(``verl/workers/utils/losses.py::ppo_loss``). SDPO also needs the teacher's log-probs, the per-sample
self-distillation mask and, for SC-SDPO, the per-sample weight. So:

* ``compute_sdpo_policy_loss`` / ``compute_sc_sdpo_policy_loss`` are registered with verl's
  ``register_policy_loss`` and take those three as extra keyword arguments. The math is
  ``scsdpo_verl.core.sampled_token_distillation_loss``; aggregation is verl's ``agg_loss`` with
  ``config.global_batch_info``, so data parallelism normalises exactly like verl's own losses.
* ``scsdpo_actor_loss`` is the actor's whole loss (the ``ppo_loss`` slot, installed by our worker): it
  selects the extra TransferQueue fields and calls the registered mode named in
  ``actor.policy_loss.loss_mode``.

The teacher values are *sampled-token* log-probs: verl 0.9.1's reference worker (where the EMA teacher
lives) returns ``log pi_T(y_t)`` of the sampled token only, so this path uses the sampled-token form of
the SDPO loss (the reference's non-logit mode), not the top-k + tail JSD.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, register_policy_loss
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.padding import no_padding_2_padding

from scsdpo_verl.core import sampled_token_distillation_loss

from .settings import SELF_DISTILLATION_LOSS_MODES

# TransferQueue fields written by ScSdpoTrainer, read by scsdpo_actor_loss (names shared with the trainer).
TEACHER_LOG_PROBS = "teacher_log_probs"
SC_WEIGHT = "sc_weight"
SD_MASK = "self_distillation_mask"


def _self_distillation_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    config: Any,
    rollout_is_weights: torch.Tensor | None,
    teacher_log_probs: torch.Tensor | None,
    sample_weight: torch.Tensor | None,
    self_distillation_mask: torch.Tensor | None,
    mode: str,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Shared body of the two modes.

    ``l_{i,t} = w_i * c_{i,t} * [-sg(log pi_T - log pi_S) log pi_S] * min(pi_S / pi_old, is_clip)`` on the
    response tokens of samples with a teacher (``m_i = 1``), zero elsewhere; ``c`` is verl's optional rollout
    IS weight. Aggregated by ``agg_loss(l, response_mask, ...)``: samples without a teacher count as zeros
    in the token-mean denominator, as in the reference.

    Shapes: old_log_prob, log_prob, response_mask, teacher_log_probs, rollout_is_weights [B, T];
    sample_weight, self_distillation_mask [B].
    """
    if config is None:
        raise ValueError(f"policy loss '{mode}' needs the actor config (actor.policy_loss.is_clip)")
    if teacher_log_probs is None:
        raise ValueError(
            f"policy loss '{mode}' needs teacher_log_probs: run it through scsdpo_actor_loss "
            "(trainer.v1.trainer_mode=scsdpo_sync installs it); verl's stock ppo_loss cannot feed it"
        )
    if mode == "sc_sdpo" and sample_weight is None:
        raise ValueError("policy loss 'sc_sdpo' needs sample_weight (the per-sample SC weight, shape [B])")
    batch = response_mask.shape[0]
    for name, value in (("sample_weight", sample_weight), ("self_distillation_mask", self_distillation_mask)):
        if value is not None and value.shape != (batch,):
            raise ValueError(f"policy loss '{mode}': {name} must have shape [{batch}], got {tuple(value.shape)}")

    loss_mask = response_mask.bool()
    if self_distillation_mask is not None:
        loss_mask = loss_mask & self_distillation_mask.bool().unsqueeze(-1)
    policy_loss_config = config.policy_loss
    per_token_loss, core_metrics = sampled_token_distillation_loss(
        log_prob,
        teacher_log_probs.to(log_prob.device),
        loss_mask,
        old_logprobs=old_log_prob,
        is_clip=policy_loss_config.get("is_clip", 2.0),
    )
    if rollout_is_weights is not None:
        per_token_loss = per_token_loss * rollout_is_weights
    if mode == "sc_sdpo":
        per_token_loss = per_token_loss * sample_weight.detach().to(per_token_loss).unsqueeze(-1)

    loss = agg_loss(
        loss_mat=per_token_loss,
        loss_mask=response_mask.bool(),
        loss_agg_mode=loss_agg_mode,
        **config.global_batch_info,
    )
    metrics: dict[str, Any] = {f"actor/{name}": value for name, value in core_metrics.items()}
    metrics["actor/sd/teacher_frac"] = (
        float(self_distillation_mask.float().mean()) if self_distillation_mask is not None else 1.0
    )
    if sample_weight is not None:
        metrics["actor/sd/sc_weight_mean"] = float(sample_weight.float().mean())
    return loss, metrics


@register_policy_loss("sdpo")
def compute_sdpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    *,
    teacher_log_probs: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    self_distillation_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """SDPO (sampled-token form): every sample with a teacher has weight 1; ``advantages`` is unused.

    ``sample_weight`` is accepted and ignored so the actor loss can call both modes alike.
    """
    del advantages, sample_weight  # SDPO replaces the policy-gradient term; no per-sample weight
    return _self_distillation_policy_loss(
        old_log_prob, log_prob, response_mask, loss_agg_mode, config, rollout_is_weights,
        teacher_log_probs, None, self_distillation_mask, mode="sdpo",
    )  # fmt: skip


@register_policy_loss("sc_sdpo")
def compute_sc_sdpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    *,
    teacher_log_probs: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    self_distillation_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """SC-SDPO (sampled-token form): the SDPO loss of sample i scaled by its SC weight ``w_i`` ([B])."""
    del advantages
    return _self_distillation_policy_loss(
        old_log_prob, log_prob, response_mask, loss_agg_mode, config, rollout_is_weights,
        teacher_log_probs, sample_weight, self_distillation_mask, mode="sc_sdpo",
    )  # fmt: skip


def per_sample_from_tokens(token_values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """A per-sample value stored broadcast over the response tokens, back to [B].

    Takes the max over each row's response tokens (the stored values are constant per row and >= 0);
    a row without response tokens gives 0. Shapes: [B, T], [B, T] -> [B].
    """
    masked = torch.where(response_mask.bool(), token_values.float(), torch.zeros_like(token_values, dtype=torch.float))
    return masked.amax(dim=-1) if masked.shape[-1] else masked.sum(-1)


def scsdpo_actor_loss(
    config: Any, model_output: dict, data: TensorDict, dp_group: Any = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The actor's loss for ``sdpo`` / ``sc_sdpo`` (drop-in for ``verl.workers.utils.losses.ppo_loss``).

    Reads ``response_mask, old_log_probs`` and our fields ``teacher_log_probs`` ([B, T]), ``sc_weight`` and
    ``self_distillation_mask`` (per-sample values stored broadcast over the response tokens) from the
    micro-batch, sets ``config.global_batch_info`` as ``ppo_loss`` does, and adds the entropy bonus when
    ``entropy_coeff != 0``. KL-to-reference is refused: the reference worker holds the teacher.
    """
    mode = config.policy_loss.get("loss_mode")
    if mode not in SELF_DISTILLATION_LOSS_MODES:
        raise ValueError(f"scsdpo_actor_loss serves loss_mode in {SELF_DISTILLATION_LOSS_MODES}, got {mode!r}")
    if config.use_kl_loss:
        raise ValueError("SDPO keeps the EMA teacher in the reference worker: set actor.use_kl_loss=false")
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy")
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)

    config.global_batch_info["dp_size"] = data["dp_size"]
    config.global_batch_info["batch_num_tokens"] = data["batch_num_tokens"]
    config.global_batch_info["global_batch_size"] = data["global_batch_size"]
    config.global_batch_info["loss_scale_factor"] = config.loss_scale_factor
    global_normalised = (
        data["dp_size"] > 1
        or data["batch_num_tokens"] is not None
        or data["global_batch_size"] is not None
        or config.loss_scale_factor is not None
    )
    metric_aggregation = AggregationType.SUM if global_normalised else AggregationType.MEAN

    fields = ["response_mask", "old_log_probs", "advantages", TEACHER_LOG_PROBS, SC_WEIGHT, SD_MASK]
    missing = [name for name in fields if name not in data]
    if missing:
        raise KeyError(f"scsdpo_actor_loss: micro-batch lacks fields {missing} (written by ScSdpoTrainer)")
    if "rollout_is_weights" in data:
        fields.append("rollout_is_weights")
    padded = data.select(*fields).to_padded_tensor()
    response_mask = padded["response_mask"].bool()

    policy_loss_fn = get_policy_loss_fn(mode)
    pg_loss, pg_metrics = policy_loss_fn(
        old_log_prob=padded["old_log_probs"],
        log_prob=log_prob,
        advantages=padded["advantages"],
        response_mask=response_mask,
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=padded.get("rollout_is_weights", None),
        teacher_log_probs=padded[TEACHER_LOG_PROBS],
        sample_weight=per_sample_from_tokens(padded[SC_WEIGHT], response_mask),
        self_distillation_mask=per_sample_from_tokens(padded[SD_MASK], response_mask) > 0,
    )
    metrics: dict[str, Any] = dict(Metric.from_dict(pg_metrics, aggregation=AggregationType.MEAN))
    metrics["actor/pg_loss"] = Metric(value=pg_loss, aggregation=metric_aggregation)
    loss = pg_loss
    if entropy is not None and config.entropy_coeff != 0:
        entropy_loss = agg_loss(
            loss_mat=entropy, loss_mask=response_mask, loss_agg_mode=config.loss_agg_mode,
            **config.global_batch_info,
        )  # fmt: skip
        loss = loss - config.entropy_coeff * entropy_loss
        metrics["actor/entropy_loss"] = Metric(value=entropy_loss, aggregation=metric_aggregation)
    return loss, metrics
