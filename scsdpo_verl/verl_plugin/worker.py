"""The actor/rollout/reference worker with an EMA self-teacher in its reference engine.

verl 0.9.1 builds the reference model in the same process as the actor (role ``actor_rollout_ref``) from
the same checkpoint, i.e. at the starting policy theta_0 - exactly the SDPO teacher's start. This subclass
adds, on top of verl's worker:

* ``init_model`` swaps the actor's loss for ``scsdpo_actor_loss`` (same ActorConfig object) and, for
  ``teacher_signal: topk_jsd``, binds it to a ``TeacherScorer`` on the reference engine's module, so the
  teacher's forward runs inside the actor's loss (verl's distillation logits-processor hook);
* ``update_teacher_ema(rate)``: ``theta_T <- (1 - rate) theta_T + rate theta`` shard by shard, device-aware
  (``teacher.ema_update_sharded_``);
* ``save_checkpoint`` / ``load_checkpoint`` also save and restore the teacher (``global_step_N/teacher``), so a
  resumed run continues with the teacher it had, not with theta_0.
"""

from __future__ import annotations

from functools import partial

from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import ActorRolloutRefWorker

from .losses import TeacherScorer, scsdpo_actor_loss
from .teacher import ema_update_sharded_, load_teacher, remove_old_teachers, save_teacher, teacher_dir


class ScSdpoWorker(ActorRolloutRefWorker):
    """``ActorRolloutRefWorker`` + SDPO actor loss + EMA teacher in the reference engine (kept in checkpoints)."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        super().init_model()
        if self._is_actor:
            actor_config = self.loss_fn.keywords["config"]  # verl's partial(ppo_loss, config=ActorConfig)
            settings = actor_config.policy_loss
            teacher = None
            if settings.get("teacher_signal") == "topk_jsd":
                if self.ref is None:
                    raise RuntimeError("teacher_signal topk_jsd needs role actor_rollout_ref (teacher in this worker)")
                teacher = TeacherScorer(self.ref.engine.module, chunk_rows=settings.get("logits_chunk_rows", 0))
            self.loss_fn = partial(scsdpo_actor_loss, config=actor_config, teacher=teacher)
            self.actor.set_loss_fn(self.loss_fn)

    def _require_teacher(self) -> None:
        if self.ref is None or self.actor is None:
            raise RuntimeError("the EMA teacher needs role actor_rollout_ref (actor and teacher in one worker)")

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def update_teacher_ema(self, rate: float) -> dict[str, float]:
        """EMA step of the teacher (reference engine) towards the actor, on each rank's shards."""
        self._require_teacher()
        tensors = ema_update_sharded_(self.ref.engine.module, self.actor.engine.module, rate)
        return {"sd/teacher_ema_rate": float(rate), "sd/teacher_ema_tensors": float(tensors)}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep)
        self._require_teacher()
        save_teacher(self.ref.engine.module, teacher_dir(local_path))
        remove_old_teachers(teacher_dir(local_path).parent.parent, max_ckpt_to_keep)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        super().load_checkpoint(local_path, hdfs_path, del_local_after_load)
        self._require_teacher()
        load_teacher(self.ref.engine.module, teacher_dir(local_path))
