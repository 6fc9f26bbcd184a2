"""The objectives of GRPO, SDPO and SC-SDPO: torch only, no framework imports, one home for every formula."""

from .advantages import clipped_policy_loss, grpo_advantages
from .aggregate import AGG_MODES, aggregate_loss, loss_normalizer
from .distill import (
    entropy_from_logits,
    gathered_logprobs,
    generalized_jsd,
    importance_weights,
    sampled_token_distillation_loss,
    self_distillation_loss,
    token_logprobs,
    topk_divergence,
)
from .learnability import closed_form_scale, monte_carlo_scale, scale_curve
from .teacher import (
    DEFAULT_TEMPLATES,
    TeacherTemplates,
    build_teacher_prompt,
    build_teacher_prompts,
    ema_lerp_,
    ema_update_,
    select_demonstrations,
    strip_thinking,
)
from .weights import NORMALIZE_MODES, group_pass_rates, sc_sdpo_weights

__all__ = [
    "AGG_MODES",
    "DEFAULT_TEMPLATES",
    "NORMALIZE_MODES",
    "TeacherTemplates",
    "aggregate_loss",
    "build_teacher_prompt",
    "build_teacher_prompts",
    "clipped_policy_loss",
    "closed_form_scale",
    "ema_lerp_",
    "ema_update_",
    "entropy_from_logits",
    "gathered_logprobs",
    "generalized_jsd",
    "group_pass_rates",
    "grpo_advantages",
    "importance_weights",
    "loss_normalizer",
    "monte_carlo_scale",
    "sampled_token_distillation_loss",
    "sc_sdpo_weights",
    "scale_curve",
    "select_demonstrations",
    "self_distillation_loss",
    "strip_thinking",
    "token_logprobs",
    "topk_divergence",
]
