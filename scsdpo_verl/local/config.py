"""The local trainer's configuration: one dataclass, validated with errors that name the key.

Defaults are the embedded CPU default (one run of one model, task and method in about 3 minutes on a
2-core machine). The SDPO settings follow the reference (``lasgroup/SDPO``, SciKnowEval/ToolUse runs):
alpha 0.5, top-k 100 + tail, EMA rate 0.05, IS cap 2, no environment feedback, T=1 rollouts,
validation at T=0.6 / top-p 0.95; the learning rate is scaled up for a few-million-parameter model.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from scsdpo_verl.core import AGG_MODES as LOSS_AGG_MODES
from scsdpo_verl.core import NORMALIZE_MODES

METHODS = ("grpo", "sdpo", "sc_sdpo")
# verl.utils.tracking.Tracking.supported_backend (0.9.1), listed here so that checking a config imports no verl
# (tests/local/test_config.py compares the two)
LOGGERS = ("wandb", "mlflow", "swanlab", "vemlp_wandb", "tensorboard", "console", "clearml", "trackio", "file",
           "rl_insight")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclass
class TrainConfig:
    # --- run ---
    run_dir: str = "runs/local/default"
    seed: int = 0
    threads: int = 2  # torch.set_num_threads; results are reproducible for a fixed thread count
    # --- model and data ---
    model_path: str = "models/qwen3-tiny/base"  # base checkpoint from `python -m scsdpo_verl.local.models`
    task: str = "synthetic_science"  # a task name for scsdpo_verl.tasks.synthetic.generate
    train_size: int = 2048  # questions generated for training (cycled in a seeded order)
    val_size: int = 64  # held-out questions (split="test") for validation
    # verl RL parquet files (the workflow's data rule writes them); when set they replace the generated rows
    train_path: str = ""
    val_path: str = ""
    # --- method ---
    method: str = "sc_sdpo"  # grpo | sdpo | sc_sdpo
    exponent: float = 0.5  # SC weight [p(1-p)]^exponent; 0 gives plain SDPO
    normalize: str = "batch_mean"  # none | batch_mean | batch_max | batch_sum
    # --- one step: Q questions x n rollouts ---
    total_steps: int = 25
    questions_per_step: int = 8
    rollouts_per_question: int = 8
    max_new_tokens: int = 64
    # rollouts per forward/backward (gradient accumulation, same gradient); 0 = the whole batch at once.
    # Bounds memory on real vocabularies: 64 rollouts of SmolLM2-135M (V=49152) need > 24 GB at once
    micro_batch_size: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    success_threshold: float = 0.5  # a rollout is a success when its score >= this (0/1 rewards)
    # --- optimiser (AdamW, linear warmup then constant, grad clip) ---
    lr: float = 1e-4
    warmup_steps: int = 5
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    # the SDPO reference runs micro-batch 1, so each sample's token-mean counts once (samples without a
    # teacher count as zeros): seq-mean-token-mean, for all three methods (the verl configs use the same)
    loss_agg_mode: str = "seq-mean-token-mean"
    # --- GRPO ---
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.28
    norm_adv_by_std: bool = False
    # --- SDPO ---
    alpha: float = 0.5
    topk: int = 100
    add_tail: bool = True
    is_clip: float = 2.0
    ema_rate: float = 0.05
    include_feedback: bool = False
    # --- validation ---
    val_every: int = 10  # steps; 0 disables periodic validation (the last step is always validated)
    val_questions: int = 32
    val_k: int = 4
    val_temperature: float = 0.6
    val_top_p: float = 0.95
    # --- checkpoints ---
    save_every: int = 20  # steps; 0 saves only at the end
    keep_last: int = 2
    resume: bool = False
    progress_bar: bool = True
    # --- experiment tracking: verl's own Tracking, configured as verl's trainer.logger / project_name /
    # experiment_name; TensorBoard event files go to <run_dir>/tensorboard ("" experiment: <method>-<task>-seed<seed>)
    logger: list = field(default_factory=lambda: ["console", "tensorboard"])
    project_name: str = "scsdpo"
    experiment_name: str = ""

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, annotation: str) -> bool:
    if annotation == "list":  # a list of strings (the only list key: logger)
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    kind = {"int": int, "float": (int, float), "str": str, "bool": bool}[annotation]
    if annotation != "bool" and isinstance(value, bool):
        return False  # True is an int in Python; never accept it for a number
    return isinstance(value, kind)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first offending key."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not _type_ok(value, str(f.type)):
            got = f"{value!r} ({type(value).__name__})"
            raise ConfigError(f"config key '{f.name}' must be of type {f.type}, got {got}")
        if f.type == "float":
            setattr(cfg, f.name, float(value))

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' {what}, got {getattr(cfg, key)!r}")

    need("method", cfg.method in METHODS, f"must be one of {METHODS}")
    need("normalize", cfg.normalize in NORMALIZE_MODES, f"must be one of {NORMALIZE_MODES}")
    need("loss_agg_mode", cfg.loss_agg_mode in LOSS_AGG_MODES, f"must be one of {LOSS_AGG_MODES}")
    need("lr", cfg.lr > 0, "must be > 0")
    for key in ("weight_decay", "exponent", "ema_rate", "clip_ratio_low", "clip_ratio_high"):
        need(key, getattr(cfg, key) >= 0, "must be >= 0")
    for key in ("temperature", "val_temperature", "grad_clip", "is_clip", "success_threshold"):
        need(key, getattr(cfg, key) > 0, "must be > 0")
    for key in ("top_p", "val_top_p"):
        need(key, 0 < getattr(cfg, key) <= 1, "must be in (0, 1]")
    for key in ("alpha", "ema_rate", "beta1", "beta2"):
        need(key, 0 <= getattr(cfg, key) <= 1, "must be in [0, 1]")
    for key in ("total_steps", "questions_per_step", "max_new_tokens", "train_size", "val_size", "threads",
                "topk", "val_questions", "val_k", "keep_last"):
        need(key, getattr(cfg, key) >= 1, "must be >= 1")
    for key in ("warmup_steps", "val_every", "save_every", "seed", "micro_batch_size"):
        need(key, getattr(cfg, key) >= 0, "must be >= 0")
    need("rollouts_per_question", cfg.rollouts_per_question >= 2, "must be >= 2 (groups need siblings)")
    need("val_questions", cfg.val_questions <= cfg.val_size, f"must be <= val_size ({cfg.val_size})")
    need("run_dir", bool(cfg.run_dir), "must not be empty")
    unknown = [name for name in cfg.logger if name not in LOGGERS]
    need("logger", not unknown, f"must name verl's tracking backends {LOGGERS}")
    need("model_path", bool(cfg.model_path), "must not be empty")


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def parse_override(key: str, text: str) -> Any:
    """Convert a command-line ``key=value`` string to the key's declared type; errors name the key."""
    kind = {f.name: str(f.type) for f in fields(TrainConfig)}.get(key)
    if kind is None:
        return text  # reported as an unknown key by load_config
    try:
        if kind == "bool":
            return _BOOLS[text.strip().lower()]
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "list":  # [a, b] (YAML flow list, as verl's trainer.logger=[console,tensorboard]) or a,b
            value = yaml.safe_load(text) if text.strip().startswith("[") else [v for v in text.split(",") if v]
            if not isinstance(value, list):
                raise ValueError(text)
            return [str(v).strip() for v in value]
    except (KeyError, ValueError, yaml.YAMLError):
        raise ConfigError(f"config key '{key}' must be of type {kind}, got {text!r}") from None
    return text


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Build a TrainConfig from a YAML/JSON file (optional) and ``key=value`` overrides.

    Errors name the file and key (unknown key, wrong type, out-of-range value).
    """
    values: dict[str, Any] = {}
    where = "overrides"
    if path is not None:
        where = str(path)
        text = Path(path).read_text()
        try:
            loaded = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot parse: {err}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config keys")
        values.update(loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        values[key.strip()] = parse_override(key.strip(), text)
    known = {f.name for f in fields(TrainConfig)}
    for key in values:
        if key not in known:
            close = [k for k in sorted(known) if k.split("_")[0] == key.split("_")[0]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown config key '{key}'{hint}")
    try:
        return TrainConfig(**values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
