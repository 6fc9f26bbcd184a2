"""Compose our Hydra configs on verl 0.9.1's ``ppo_trainer`` and reject keys verl does not know.

Hydra merges a primary config's own body without struct checks, so a misspelled key in our YAML would be
silently added. ``check_known_keys`` walks the composed config against verl's plain ``ppo_trainer``: every
key must exist there, except under free-form dicts (empty in verl, e.g. ``apply_chat_template_kwargs``) and
the SDPO fields of ``actor.policy_loss`` (declared by ``SelfDistillationPolicyLossConfig``), keys that are
fields of the section's ``_target_`` dataclass although verl's YAML leaves them out (e.g.
``fsdp_config.mixed_precision``), and ``ray_kwargs.ray_init``, whose keys go to ``ray.init`` as they are.
``check_dataclasses`` then builds verl's own dataclasses, as the workers will.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from .settings import SelfDistillationPolicyLossConfig

CONFIG_MODULE = "scsdpo_verl.verl_plugin.config"
CONFIG_NAMES: tuple[str, ...] = ("grpo", "sdpo", "sc_sdpo")
POLICY_LOSS_PATH = "actor_rollout_ref.actor.policy_loss"
# passed through to a function as keyword arguments (verl lists a few and accepts any)
FREE_FORM_PATHS: tuple[str, ...] = ("ray_kwargs.ray_init",)
# Sections verl turns into dataclasses before training. Left out: model (loads the checkpoint's config) and
# ref (the worker renames its log_prob_* keys before converting it; its keys are still checked by name).
DATACLASS_SECTIONS: tuple[str, ...] = ("algorithm", "actor_rollout_ref.actor", "actor_rollout_ref.rollout")


def compose_config(name: str, overrides: Sequence[str] = (), config_module: str = CONFIG_MODULE) -> DictConfig:
    """Hydra-compose ``<config_module>/<name>.yaml`` with command-line style ``overrides``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=config_module, version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def compose_verl_base() -> DictConfig:
    """verl 0.9.1's own ``ppo_trainer`` config, composed the way ``verl.trainer.main_ppo`` does."""
    return compose_config("ppo_trainer", config_module="verl.trainer.config")


def _extra_policy_loss_keys() -> set[str]:
    return {f.name for f in dataclasses.fields(SelfDistillationPolicyLossConfig)}


def _target_fields(node: DictConfig) -> set[str]:
    """Field names of the dataclass a section's ``_target_`` names (empty when it names none)."""
    target = node.get("_target_", None) if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return set()
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:  # a target we cannot import is reported by check_dataclasses, not here
        return set()
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def unknown_keys(config: DictConfig, base: DictConfig, path: str = "") -> list[str]:
    """Dotted paths present in ``config`` but not in ``base`` (free-form dicts, fields of the section's
    ``_target_`` dataclass and the policy-loss extras allowed)."""
    found: list[str] = []
    if path in FREE_FORM_PATHS:
        return found
    for key in config:
        dotted = f"{path}.{key}" if path else str(key)
        if key not in base.keys():  # noqa: SIM118  (`in` skips mandatory '???' values; keys() lists them)
            allowed = (path == POLICY_LOSS_PATH and key in _extra_policy_loss_keys()) or key in _target_fields(base)
            if not allowed:
                found.append(dotted)
            continue
        child, base_child = config._get_node(key), base._get_node(key)
        if isinstance(child, DictConfig) and isinstance(base_child, DictConfig):
            if len(base_child) == 0:  # free-form in verl (kwargs dicts)
                continue
            found.extend(unknown_keys(child, base_child, dotted))
    return found


def check_known_keys(config: DictConfig, name: str, base: DictConfig | None = None) -> None:
    """Raise ``ValueError`` naming the config and every key verl 0.9.1 does not define."""
    bad = unknown_keys(config, base if base is not None else compose_verl_base())
    if bad:
        raise ValueError(f"config '{name}': keys unknown to verl 0.9.1's ppo_trainer: {', '.join(bad)}")


def check_dataclasses(config: DictConfig) -> dict[str, object]:
    """Build verl's dataclasses for the sections in ``DATACLASS_SECTIONS`` (raises on bad fields)."""
    from verl.utils.config import omega_conf_to_dataclass

    resolved = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    return {section: omega_conf_to_dataclass(OmegaConf.select(resolved, section)) for section in DATACLASS_SECTIONS}


def _looks_local(path: str) -> bool:
    """A filesystem path rather than a hub id ('org/name') or a remote URI."""
    if "://" in path:
        return False
    return os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1 or os.path.exists(path)


def check_inputs(config: DictConfig) -> None:
    """Inputs that would otherwise fail deep inside a Ray worker, refused here naming the key."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    model = OmegaConf.select(config, "actor_rollout_ref.model.path", throw_on_missing=False)
    if model in (None, "", "???"):
        raise ValueError("actor_rollout_ref.model.path is not set (an HF directory or a hub id)")
    if _looks_local(str(model)) and not os.path.isdir(os.path.expanduser(str(model))):
        raise ValueError(f"actor_rollout_ref.model.path: no model directory at {model!r}")
    for key in ("data.train_files", "data.val_files", "reward.custom_reward_function.path"):
        value = OmegaConf.select(config, key, throw_on_missing=False)
        paths = [] if value in (None, "???") else ([value] if isinstance(value, str) else list(value))
        for path in paths:
            if _looks_local(str(path)) and not os.path.exists(os.path.expanduser(str(path))):
                raise ValueError(f"{key}: no such file {path!r}")
    rollout = config.actor_rollout_ref.rollout.name
    if rollout not in RolloutReplicaRegistry._registry:
        raise ValueError(f"actor_rollout_ref.rollout.name={rollout!r} is not a registered rollout; verl knows "
                         f"{sorted(RolloutReplicaRegistry._registry)} here")
