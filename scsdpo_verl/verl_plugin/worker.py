"""The actor/rollout/reference worker with an EMA self-teacher in its reference engine.

verl 0.9.1 builds the reference model in the same process as the actor (role ``actor_rollout_ref``) from
the same checkpoint, i.e. at the starting policy theta_0 - exactly the SDPO teacher's start. This subclass
adds two things and changes nothing else:

* ``init_model`` swaps the actor's loss for ``scsdpo_actor_loss`` (same ActorConfig object), which feeds the
  teacher log-probs, SC weights and masks to the registered ``sdpo`` / ``sc_sdpo`` policy loss;
* ``update_teacher_ema(rate)`` moves the reference (teacher) parameters towards the actor's,
  ``theta_T <- (1 - rate) theta_T + rate theta`` (``scsdpo_verl.core.ema_update_``), shard by shard.
"""

from __future__ import annotations

from functools import partial

from verl.single_controller.base.decorator import Dispatch, register
from verl.utils.device import get_device_name
from verl.workers.engine_workers import ActorRolloutRefWorker

from scsdpo_verl.core import ema_update_

from .losses import scsdpo_actor_loss


class ScSdpoWorker(ActorRolloutRefWorker):
    """``ActorRolloutRefWorker`` + SDPO actor loss + EMA update of the reference (teacher) engine."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        super().init_model()
        if self._is_actor:
            actor_config = self.loss_fn.keywords["config"]  # verl's partial(ppo_loss, config=ActorConfig)
            self.loss_fn = partial(scsdpo_actor_loss, config=actor_config)
            self.actor.set_loss_fn(self.loss_fn)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def update_teacher_ema(self, rate: float) -> dict[str, float]:
        """EMA step of the teacher (reference engine) towards the actor; both engines shard alike (FSDP)."""
        if self.ref is None or self.actor is None:
            raise RuntimeError("update_teacher_ema needs role actor_rollout_ref (actor and teacher in one worker)")
        engines = [self.actor.engine, self.ref.engine]
        offloaded = [engine for engine in engines if engine.is_param_offload_enabled]
        for engine in offloaded:  # parameters must sit on one device for the in-place lerp
            engine.to(get_device_name(), model=True, optimizer=False, grad=False)
        try:
            ema_update_(self.ref.engine.module, self.actor.engine.module, rate)
        finally:
            for engine in offloaded:
                engine.to("cpu", model=True, optimizer=False, grad=False)
        return {"sd/teacher_ema_rate": float(rate)}
