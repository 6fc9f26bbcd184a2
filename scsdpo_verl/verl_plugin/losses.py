"""verl policy-loss modes ``sdpo`` and ``sc_sdpo``, and the actor loss that feeds them.

Two teacher signals (``actor.policy_loss.teacher_signal``):

* ``topk_jsd`` (default, the SDPO reference's objective). verl 0.9.1's distillation logits-processor hook
  (``FSDPEngineWithLMHead.prepare_model_outputs`` with ``distillation_use_topk``) calls the installed loss
  function with the student's logits, with gradient, before computing log-probs. ``scsdpo_actor_loss`` then
  runs the **processor branch** (``hook.py``): it takes the student's top-k tokens at each response position,
  runs the EMA teacher's forward (``TeacherScorer``, the reference engine's module, no gradient) on the teacher rows
  (teacher prompt + the student's own response) with ``logits_to_keep`` at the response positions, reads the
  teacher's full-vocabulary log-probs at the student's top-k, and returns the per-token divergence
  ``core.topk_divergence`` (top-k + tail, generalized JSD ``alpha``). verl nests it into ``model_output``.
  The **final branch** (verl's ordinary loss call) weights it and aggregates.
* ``sampled_token``: the reference's non-logit mode. The trainer scores the teacher rows with the reference
  engine and writes ``teacher_log_probs``; the loss is ``core.sampled_token_distillation_loss``.

Both end in the registered modes ``compute_sdpo_policy_loss`` / ``compute_sc_sdpo_policy_loss``:
``l_it = w_i * m_i * c_it * min(pi/pi_old, is_clip) * d_it``, aggregated by verl's ``agg_loss`` with
``config.global_batch_info`` (so data parallelism normalises exactly like verl's own losses), where ``d_it`` is
the token divergence (or the sampled-token surrogate), ``m_i`` the self-distillation mask, ``w_i`` the SC weight
(1 for SDPO) and ``c_it`` verl's optional rollout IS weight. On-policy (one mini-batch, one epoch) the IS ratio
is exactly 1, as in the reference (``old_log_prob`` is the current log-prob, detached).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, register_policy_loss
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.padding import no_padding_2_padding

from scsdpo_verl.core import importance_weights, sampled_token_distillation_loss

from .hook import SD_MASK, TEACHER_INPUT_IDS, TOKEN_DIVERGENCE, TeacherScorer, response_positions, token_divergences
from .settings import SELF_DISTILLATION_LOSS_MODES

# TransferQueue fields written by ScSdpoTrainer and read here (names shared with the trainer; the hook's in hook.py).
TEACHER_LOG_PROBS = "teacher_log_probs"  # sampled_token: log pi_T(y_t), nested [B, R_i]
SC_WEIGHT = "sc_weight"  # per-sample SC weight, stored broadcast over the response tokens
__all__ = ["SD_MASK", "TEACHER_INPUT_IDS", "TOKEN_DIVERGENCE", "TeacherScorer", "response_positions",
           "scsdpo_actor_loss", "token_divergences"]


# ------------------------------------------------------------------------------------------------------------
# the registered policy-loss modes
# ------------------------------------------------------------------------------------------------------------
def _self_distillation_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    config: Any,
    rollout_is_weights: torch.Tensor | None,
    teacher_log_probs: torch.Tensor | None,
    token_divergence: torch.Tensor | None,
    sample_weight: torch.Tensor | None,
    self_distillation_mask: torch.Tensor | None,
    mode: str,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Shared body of the two modes (see the module docstring for the formula).

    Exactly one of ``token_divergence`` (topk_jsd: the per-token divergence, with gradient) and
    ``teacher_log_probs`` (sampled_token) is given. Samples without a teacher (``m_i = 0``) contribute zeros and
    still count in the denominator, since ``agg_loss`` sees ``response_mask``.

    Shapes: old_log_prob, log_prob, response_mask, teacher_log_probs, token_divergence, rollout_is_weights [B, T];
    sample_weight, self_distillation_mask [B].
    """
    if config is None:
        raise ValueError(f"policy loss '{mode}' needs the actor config (actor.policy_loss.is_clip)")
    if (teacher_log_probs is None) == (token_divergence is None):
        raise ValueError(
            f"policy loss '{mode}' needs exactly one of token_divergence (teacher_signal topk_jsd) and "
            "teacher_log_probs (teacher_signal sampled_token): run it through scsdpo_actor_loss "
            "(trainer.v1.trainer_mode=scsdpo_sync installs it); verl's stock ppo_loss cannot feed them"
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
    is_clip = config.policy_loss.get("is_clip", 2.0)
    if token_divergence is not None:
        is_weight = importance_weights(log_prob, old_log_prob, is_clip)
        per_token_loss = token_divergence * is_weight.to(token_divergence)
        per_token_loss = torch.where(loss_mask, per_token_loss, torch.zeros_like(per_token_loss))
        # sums over this micro-batch's teacher tokens (SUM-aggregated; the trainer divides by the token count,
        # so micro-batches without a teacher do not drag the means towards 0)
        metrics: dict[str, Any] = {
            "actor/sd/divergence_sum": _masked_sum(token_divergence, loss_mask),
            "actor/sd/is_ratio_sum": _masked_sum(is_weight, loss_mask),
            "actor/sd/num_tokens": float(loss_mask.sum()),
        }
    else:
        per_token_loss, core_metrics = sampled_token_distillation_loss(
            log_prob, teacher_log_probs.to(log_prob.device), loss_mask, old_logprobs=old_log_prob, is_clip=is_clip
        )
        metrics = {f"actor/{name}": value for name, value in core_metrics.items()}
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
    metrics["actor/sd/teacher_frac"] = (
        float(self_distillation_mask.float().mean()) if self_distillation_mask is not None else 1.0
    )
    if sample_weight is not None:
        metrics["actor/sd/sc_weight_mean"] = float(sample_weight.float().mean())
    return loss, metrics


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(torch.where(mask, values.detach().float(), torch.zeros((), device=values.device)).sum())


def summed_metric(name: str) -> bool:
    """Metrics that add up over micro-batches (token sums and counts) rather than average."""
    return name.endswith(("_sum", "/num_tokens"))


@register_policy_loss("sdpo")
def compute_sdpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    *,
    teacher_log_probs: torch.Tensor | None = None,
    token_divergence: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    self_distillation_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """SDPO: every sample with a teacher has weight 1; ``advantages`` is unused.

    ``sample_weight`` is accepted and ignored so the actor loss can call both modes alike.
    """
    del advantages, sample_weight  # SDPO replaces the policy-gradient term; no per-sample weight
    return _self_distillation_policy_loss(
        old_log_prob, log_prob, response_mask, loss_agg_mode, config, rollout_is_weights,
        teacher_log_probs, token_divergence, None, self_distillation_mask, mode="sdpo",
    )  # fmt: skip


@register_policy_loss("sc_sdpo")
def compute_sc_sdpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    *,
    teacher_log_probs: torch.Tensor | None = None,
    token_divergence: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    self_distillation_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """SC-SDPO: the SDPO loss of sample i scaled by its SC weight ``w_i`` ([B])."""
    del advantages
    return _self_distillation_policy_loss(
        old_log_prob, log_prob, response_mask, loss_agg_mode, config, rollout_is_weights,
        teacher_log_probs, token_divergence, sample_weight, self_distillation_mask, mode="sc_sdpo",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# the actor's loss (the ppo_loss slot)
# ------------------------------------------------------------------------------------------------------------
def per_sample_from_tokens(token_values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """A per-sample value stored broadcast over the response tokens, back to [B].

    Takes the max over each row's response tokens (the stored values are constant per row and >= 0);
    a row without response tokens gives 0. Shapes: [B, T], [B, T] -> [B].
    """
    values = token_values.to(torch.promote_types(token_values.dtype, torch.float32))
    masked = torch.where(response_mask.bool(), values, torch.zeros_like(values))
    return masked.amax(dim=-1) if masked.shape[-1] else masked.sum(-1)


# extra_info key set by ScSdpoTrainer._update_actor: one mini-batch and one epoch, so pi_old = pi
ON_POLICY = "scsdpo_on_policy"


def scsdpo_actor_loss(
    config: Any,
    model_output: dict | None = None,
    data: TensorDict | None = None,
    dp_group: Any = None,
    *,
    student_logits: torch.Tensor | None = None,
    teacher: TeacherScorer | None = None,
) -> tuple[torch.Tensor, dict[str, Any]] | dict[str, torch.Tensor]:
    """The actor's loss for ``sdpo`` / ``sc_sdpo`` (drop-in for ``verl.workers.utils.losses.ppo_loss``).

    Called by verl twice per micro-batch with ``topk_jsd``: first with ``student_logits`` (the processor branch,
    ``token_divergences``), then with ``model_output`` (this branch). Reads ``response_mask, old_log_probs`` and
    our fields from the micro-batch, sets ``config.global_batch_info`` as ``ppo_loss`` does, and adds the
    entropy bonus when ``entropy_coeff != 0``. KL-to-reference is refused: the reference worker holds the teacher.
    """
    settings = config.policy_loss
    if student_logits is not None:
        if teacher is None:
            raise ValueError("teacher_signal topk_jsd needs the teacher scorer (ScSdpoWorker installs it)")
        return token_divergences(student_logits, data, teacher, settings)

    mode = settings.get("loss_mode")
    if mode not in SELF_DISTILLATION_LOSS_MODES:
        raise ValueError(f"scsdpo_actor_loss serves loss_mode in {SELF_DISTILLATION_LOSS_MODES}, got {mode!r}")
    if config.use_kl_loss:
        raise ValueError("SDPO keeps the EMA teacher in the reference worker: set actor.use_kl_loss=false")
    topk_signal = settings.get("teacher_signal") == "topk_jsd"
    if topk_signal and TOKEN_DIVERGENCE not in model_output:
        raise KeyError(
            f"scsdpo_actor_loss: model_output lacks '{TOKEN_DIVERGENCE}': teacher_signal topk_jsd needs verl's "
            "distillation hook (distillation_use_topk in the update's extra_info, set by ScSdpoTrainer)"
        )
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy")
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)
    divergence = no_padding_2_padding(model_output[TOKEN_DIVERGENCE], data) if topk_signal else None

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

    fields = ["response_mask", "old_log_probs", "advantages", SC_WEIGHT, SD_MASK]
    if not topk_signal:
        fields.append(TEACHER_LOG_PROBS)
    missing = [name for name in fields if name not in data]
    if missing:
        raise KeyError(f"scsdpo_actor_loss: micro-batch lacks fields {missing} (written by ScSdpoTrainer)")
    if "rollout_is_weights" in data:
        fields.append("rollout_is_weights")
    padded = data.select(*fields).to_padded_tensor()
    response_mask = padded["response_mask"].bool()
    # on-policy (one mini-batch, one epoch) the ratio is exactly 1, as in the reference
    on_policy = bool(tu.get_non_tensor_data(data=data, key=ON_POLICY, default=False))
    old_log_prob = log_prob.detach() if on_policy else padded["old_log_probs"]

    policy_loss_fn = get_policy_loss_fn(mode)
    pg_loss, pg_metrics = policy_loss_fn(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=padded["advantages"],
        response_mask=response_mask,
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=padded.get("rollout_is_weights", None),
        teacher_log_probs=None if topk_signal else padded[TEACHER_LOG_PROBS],
        token_divergence=divergence,
        sample_weight=per_sample_from_tokens(padded[SC_WEIGHT], response_mask),
        self_distillation_mask=per_sample_from_tokens(padded[SD_MASK], response_mask) > 0,
    )
    metrics: dict[str, Any] = {
        name: Metric(value=value, aggregation=AggregationType.SUM if summed_metric(name) else AggregationType.MEAN)
        for name, value in pg_metrics.items()
    }
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
