"""ScSdpoTrainer's actor update against verl's own, with fake worker groups (no Ray): the same extra_info apart from
the two keys we set on purpose, and the EMA teacher step only after a finite gradient norm."""

from __future__ import annotations

import math

import pytest
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from scsdpo_verl.verl_plugin.configs import compose_config
from scsdpo_verl.verl_plugin.losses import ON_POLICY
from scsdpo_verl.verl_plugin.settings import SelfDistillationPolicyLossConfig
from scsdpo_verl.verl_plugin.trainer import ScSdpoTrainer, check_supported


class FakeWorkerGroup:
    def __init__(self, grad_norm: float) -> None:
        self.grad_norm, self.updates, self.ema_rates = grad_norm, [], []

    def update_actor(self, batch: KVBatchMeta) -> dict:
        self.updates.append(dict(batch.extra_info))
        return {"metrics": {"grad_norm": [self.grad_norm], "pg_loss": [0.25], "mfu": [0.0]}}

    def update_teacher_ema(self, rate: float) -> None:
        self.ema_rates.append(rate)


def trainer(config_name: str, grad_norm: float, *overrides: str) -> tuple[ScSdpoTrainer, FakeWorkerGroup]:
    config = compose_config(config_name, ["data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
                                          *overrides])
    instance = object.__new__(ScSdpoTrainer)
    instance.config = config
    instance.sd_settings = SelfDistillationPolicyLossConfig(
        **{k: v for k, v in config.actor_rollout_ref.actor.policy_loss.items() if k != "_target_"})
    instance.distillation_config = None
    instance.actor_rollout_wg = FakeWorkerGroup(grad_norm)
    return instance, instance.actor_rollout_wg


def batch() -> KVBatchMeta:
    return KVBatchMeta(keys=["a_0", "a_1"], tags=[{}, {}], partition_id="train", extra_info={"temperature": 1.0})


@pytest.mark.parametrize("signal", ["topk_jsd", "sampled_token"])
@pytest.mark.parametrize("extra", [(), ("actor_rollout_ref.actor.ppo_epochs=3", "actor_rollout_ref.actor.shuffle=true",
                                        "actor_rollout_ref.actor.entropy_coeff=0.01",
                                        "actor_rollout_ref.actor.data_loader_seed=7",
                                        "actor_rollout_ref.rollout.temperature=0.8")])
def test_update_actor_sends_verls_extra_info_plus_the_hook_and_on_policy_flags(signal, extra):
    overrides = (f"actor_rollout_ref.actor.policy_loss.teacher_signal={signal}", *extra)
    ours, ours_wg = trainer("sc_sdpo", 0.5, *overrides)
    stock, stock_wg = trainer("sc_sdpo", 0.5, *overrides)
    metrics_ours, metrics_stock = {}, {}
    ScSdpoTrainer._update_actor(ours, batch(), metrics_ours)
    PPOTrainer._update_actor(stock, batch(), metrics_stock)
    sent, expected = ours_wg.updates[0], stock_wg.updates[0]
    assert sent.pop("distillation_use_topk") == (signal == "topk_jsd")
    assert sent.pop(ON_POLICY) is (not extra)  # mini-batch 4 = train batch 4, and one epoch unless extra
    expected.pop("distillation_use_topk")
    assert sent == expected
    for name, value in metrics_stock.items():
        assert metrics_ours[name] == value


def test_the_ema_follows_a_finite_update_and_skips_a_non_finite_one():
    ours, wg = trainer("sdpo", 0.5)
    metrics = {}
    ScSdpoTrainer._update_actor(ours, batch(), metrics)
    assert wg.ema_rates == [0.05] and metrics["sd/teacher_updated"] == 1.0
    for bad in (math.nan, math.inf):
        ours, wg = trainer("sdpo", bad)
        metrics = {}
        ScSdpoTrainer._update_actor(ours, batch(), metrics)
        assert wg.ema_rates == [] and metrics["sd/teacher_updated"] == 0.0


def test_off_policy_when_the_batch_is_split_or_repeated():
    for overrides in (["actor_rollout_ref.actor.ppo_mini_batch_size=2"], ["actor_rollout_ref.actor.ppo_epochs=2"]):
        ours, wg = trainer("sdpo", 0.5, *overrides)
        ScSdpoTrainer._update_actor(ours, batch(), {})
        assert wg.updates[0][ON_POLICY] is False


@pytest.mark.parametrize(("override", "message"), [
    ("actor_rollout_ref.actor.use_dynamic_bsz=true", "use_dynamic_bsz"),
    ("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2", "ulysses_sequence_parallel_size"),
    ("actor_rollout_ref.actor.fsdp_config.pad_to_length=true", "pad_to_length"),
    ("actor_rollout_ref.model.use_fused_kernels=true", "use_fused_kernels"),
    ("actor_rollout_ref.ref.strategy=fsdp", "strategy"),
    ("actor_rollout_ref.actor.strategy=megatron", "strategy"),
])
def test_configurations_the_hook_cannot_serve_are_refused(override, message):
    config = compose_config("sdpo", [override])
    settings = SelfDistillationPolicyLossConfig(loss_mode="sdpo")
    with pytest.raises(ValueError, match=message):
        check_supported(config, settings)
    check_supported(compose_config("sdpo", []), settings)  # the shipped config passes
