"""The self-distillation settings, carried by verl's own ``actor_rollout_ref.actor.policy_loss`` section.

verl builds ``ActorConfig.policy_loss`` with Hydra's ``_target_``; pointing that at this subclass lets the
SDPO knobs travel with the actor config into every Ray worker (the loss reads them there) and lets the
trainer read the same object on the driver side. Misspelled keys fail at dataclass construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from verl.workers.config import PolicyLossConfig

from scsdpo_verl.core.weights import NORMALIZE_MODES

SELF_DISTILLATION_LOSS_MODES: tuple[str, ...] = ("sdpo", "sc_sdpo")
TEACHER_SIGNALS: tuple[str, ...] = ("topk_jsd", "sampled_token")
TRUNCATION_SIDES: tuple[str, ...] = ("left", "right")


@dataclass
class SelfDistillationPolicyLossConfig(PolicyLossConfig):
    """``PolicyLossConfig`` plus the SDPO / SC-SDPO settings (reference values as defaults).

    Args:
        alpha: divergence mix (0 forward KL, 1 reverse KL, 0.5 JSD); used by the top-k form.
        topk, add_tail: top-k support (+ tail bucket) of the top-k form.
        is_clip: cap of the detached importance weight ``min(pi/pi_old, is_clip)``.
        teacher_update_rate: EMA rate ``tau`` in ``theta_T <- (1 - tau) theta_T + tau theta``.
        teacher_signal: ``topk_jsd`` (the reference's objective): the EMA teacher's forward runs inside the
            actor's loss through verl's distillation logits-processor hook and the loss is the generalized JSD
            (``alpha``) on the student's top-``topk`` tokens + a tail bucket (``add_tail``), with full-vocabulary
            normalisation; ``sampled_token``: the reference's non-logit mode, a policy gradient with token
            advantage ``log pi_T(y_t) - log pi_S(y_t)`` from the reference worker's sampled-token log-probs.
        logits_chunk_rows: response positions per chunk of the fp32 log-sum-exp over the vocabulary in the
            ``topk_jsd`` loss (bounds the fp32 working copy; 0 = no chunking).
        success_threshold: a rollout is a success when its summed reward is ``>=`` this.
        sc_exponent, sc_normalize: SC weight ``[p(1-p)]^exponent / Z`` (``sdpo`` forces exponent 0).
        exclude_self: never use a sample's own response as its demonstration.
        strip_thinking: drop ``<think>..</think>`` from demonstrations.
        include_environment_feedback: add ``reward_extra_info['feedback']`` to the teacher prompt.
        max_teacher_prompt_length: teacher prompt tokens kept (reference: 10240).
        teacher_prompt_truncation: which side is cut when the teacher prompt is too long.
    """

    alpha: float = 0.5
    topk: int | None = 100
    add_tail: bool = True
    is_clip: float | None = 2.0
    teacher_update_rate: float = 0.05
    teacher_signal: str = "topk_jsd"
    logits_chunk_rows: int = 1024
    success_threshold: float = 0.5
    sc_exponent: float = 0.5
    sc_normalize: str = "batch_mean"
    exclude_self: bool = True
    strip_thinking: bool = True
    include_environment_feedback: bool = False
    max_teacher_prompt_length: int = 10240
    teacher_prompt_truncation: str = "right"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"policy_loss.alpha must lie in [0, 1], got {self.alpha}")
        if not 0.0 < self.teacher_update_rate <= 1.0:
            raise ValueError(f"policy_loss.teacher_update_rate must lie in (0, 1], got {self.teacher_update_rate}")
        if self.teacher_signal not in TEACHER_SIGNALS:
            raise ValueError(
                f"policy_loss.teacher_signal must be one of {TEACHER_SIGNALS}, got {self.teacher_signal!r}"
            )
        if self.sc_normalize not in NORMALIZE_MODES:
            raise ValueError(f"policy_loss.sc_normalize must be one of {NORMALIZE_MODES}, got {self.sc_normalize!r}")
        if self.teacher_prompt_truncation not in TRUNCATION_SIDES:
            raise ValueError(
                f"policy_loss.teacher_prompt_truncation must be one of {TRUNCATION_SIDES}, "
                f"got {self.teacher_prompt_truncation!r}"
            )
        if self.topk is not None and self.topk < 1:
            raise ValueError(f"policy_loss.topk must be >= 1 or null (full vocabulary), got {self.topk}")
        if self.logits_chunk_rows < 0:
            raise ValueError(f"policy_loss.logits_chunk_rows must be >= 0, got {self.logits_chunk_rows}")
        if self.max_teacher_prompt_length < 1:
            raise ValueError("policy_loss.max_teacher_prompt_length must be >= 1")

    def weight_exponent(self) -> float:
        """SC exponent for ``loss_mode``: plain SDPO weighs every sample with a teacher by 1."""
        return self.sc_exponent if self.loss_mode == "sc_sdpo" else 0.0
