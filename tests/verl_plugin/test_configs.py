"""Our Hydra configs compose on verl 0.9.1's ppo_trainer, convert to verl's dataclasses, reject unknown keys."""

from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException, InstantiationException

from scsdpo_verl.verl_plugin.configs import (
    CONFIG_NAMES,
    check_dataclasses,
    check_known_keys,
    compose_config,
    compose_verl_base,
    unknown_keys,
)
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig

MODEL = "actor_rollout_ref.model.path=/not/loaded"


@pytest.fixture(scope="module")
def base():
    return compose_verl_base()


@pytest.fixture(scope="module")
def composed():
    return {name: compose_config(name, [MODEL]) for name in CONFIG_NAMES}


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_composes_with_known_keys_and_dataclasses(composed, base, name):
    config = composed[name]
    assert unknown_keys(config, base) == []
    built = check_dataclasses(config)
    actor = built["actor_rollout_ref.actor"]
    assert actor.optim.lr == pytest.approx(1e-5) and actor.optim.lr_warmup_steps == 10
    assert actor.optim.lr_scheduler_type == "constant" and actor.grad_clip == 1.0
    assert actor.ppo_mini_batch_size == 32 and actor.use_kl_loss is False
    rollout = built["actor_rollout_ref.rollout"]
    assert rollout.n == 8 and rollout.val_kwargs.n == 16
    assert rollout.val_kwargs.temperature == pytest.approx(0.6) and rollout.val_kwargs.top_p == pytest.approx(0.95)
    assert config.data.train_batch_size == 32
    assert (config.data.max_prompt_length, config.data.max_response_length) == (2048, 8192)
    assert built["algorithm"].norm_adv_by_std_in_grpo is False


@pytest.mark.parametrize("name, loss_mode, exponent", [("sdpo", "sdpo", 0.0), ("sc_sdpo", "sc_sdpo", 0.5)])
def test_self_distillation_settings(composed, name, loss_mode, exponent):
    config = composed[name]
    settings = check_dataclasses(config)["actor_rollout_ref.actor"].policy_loss
    assert isinstance(settings, SelfDistillationPolicyLossConfig)
    assert settings.loss_mode == loss_mode and settings.weight_exponent() == exponent
    assert (settings.alpha, settings.topk, settings.add_tail) == (0.5, 100, True)
    assert (settings.teacher_update_rate, settings.is_clip, settings.max_teacher_prompt_length) == (0.05, 2.0, 10240)
    assert settings.include_environment_feedback is False and settings.exclude_self is True
    assert config.trainer.v1.trainer_mode == "scsdpo_sync"


def test_grpo_uses_stock_trainer_and_loss(composed):
    config = composed["grpo"]
    assert config.trainer.v1.trainer_mode == "sync"
    assert config.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"
    assert (config.actor_rollout_ref.actor.clip_ratio_low, config.actor_rollout_ref.actor.clip_ratio_high) == (
        0.2,
        0.28,
    )


def test_misspelled_override_fails_in_hydra():
    with pytest.raises(ConfigCompositionException):
        compose_config("sdpo", [MODEL, "actor_rollout_ref.actor.optim.lrr=1e-6"])


def test_added_unknown_keys_fail(base):
    overrides = [MODEL, "+trainer.total_epoch=3", "+actor_rollout_ref.actor.policy_loss.alpah=0.3"]
    config = compose_config("sc_sdpo", overrides)
    with pytest.raises(ValueError, match=r"sc_sdpo.*trainer\.total_epoch"):
        check_known_keys(config, "sc_sdpo", base)
    with pytest.raises(InstantiationException, match="alpah"):
        check_dataclasses(config)


def test_known_extra_policy_loss_key_is_accepted(base):
    config = compose_config("sdpo", [MODEL, "actor_rollout_ref.actor.policy_loss.alpha=1.0"])
    check_known_keys(config, "sdpo", base)
    assert check_dataclasses(config)["actor_rollout_ref.actor"].policy_loss.alpha == 1.0


def test_ray_init_is_free_form_and_target_dataclass_fields_are_known(base):
    """CPU mode's keys: ray.init arguments verl's YAML does not list, FSDP's mixed_precision (a field of
    FSDPEngineConfig that verl's YAML leaves out); a misspelled field of the same section still fails."""
    ok = [MODEL, "+ray_kwargs.ray_init.num_gpus=2", "+ray_kwargs.ray_init.object_store_memory=1000000",
          "++actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32}"]
    check_known_keys(compose_config("sdpo", ok), "sdpo", base)
    bad = compose_config("sdpo", [MODEL, "+actor_rollout_ref.actor.fsdp_config.mixed_precisoin=fp32"])
    with pytest.raises(ValueError, match=r"fsdp_config\.mixed_precisoin"):
        check_known_keys(bad, "sdpo", base)


def test_launcher_refuses_missing_inputs_naming_the_key(tmp_path, monkeypatch):
    from scsdpo_verl.verl_plugin.main import enable_plugin_env, prepare_config

    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    enable_plugin_env()
    model = tmp_path / "model"
    model.mkdir()
    data = tmp_path / "train.parquet"
    data.write_text("")
    ok = [f"actor_rollout_ref.model.path={model}", f"data.train_files={data}", f"data.val_files={data}"]
    prepare_config("sdpo", ok)
    prepare_config("sdpo", ["actor_rollout_ref.model.path=Qwen/Qwen3-8B", *ok[1:]])  # a hub id is not checked
    cases = [
        (["actor_rollout_ref.model.path=/nonexistent/model", *ok[1:]], "actor_rollout_ref.model.path: no model"),
        ([*ok[:2], "data.val_files=./missing.parquet"], "data.val_files: no such file"),
        ([*ok, "actor_rollout_ref.rollout.name=hf"], "rollout.name='hf' is not a registered rollout"),
        ([*ok, "actor_rollout_ref.rollout.name=hf_cpu"], "needs CPU mode"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            prepare_config("sdpo", overrides)


def test_launcher_forwards_the_plugin_and_logger_variables_to_ray(tmp_path, monkeypatch):
    from scsdpo_verl.verl_plugin.main import enable_plugin_env, prepare_config

    for name, value in {"VERL_FILE_LOGGER_PATH": "/runs/a/verl_metrics.1.jsonl", "TENSORBOARD_DIR": "/runs/a/tb",
                        "SCSDPO_CRASH_AFTER_SAVE": "1", "UNRELATED": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    enable_plugin_env()
    config = prepare_config("sdpo", ["actor_rollout_ref.model.path=Qwen/Qwen3-8B"], check_paths=False)
    env_vars = dict(config.ray_kwargs.ray_init.runtime_env.env_vars)
    assert env_vars["VERL_FILE_LOGGER_PATH"] == "/runs/a/verl_metrics.1.jsonl"
    assert env_vars["TENSORBOARD_DIR"] == "/runs/a/tb" and env_vars["SCSDPO_CRASH_AFTER_SAVE"] == "1"
    assert env_vars["VERL_USE_EXTERNAL_PLUGINS"] == "scsdpo" and "UNRELATED" not in env_vars
