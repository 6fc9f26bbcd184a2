"""SDPO / SC-SDPO as a verl 0.9.1 plugin (no fork).

verl imports this module from its ``verl.plugins`` entry point whenever any process (driver, TaskRunner,
every Ray worker) runs ``import verl``. Importing it registers

* policy-loss modes ``sdpo`` and ``sc_sdpo`` (``losses.py``) in verl's ``POLICY_LOSS_REGISTRY``;
* trainer ``scsdpo_sync`` (``trainer.py``) in verl's v1 ``TRAINER_REGISTRY``;
* with ``VERL_PLATFORM=cpu`` only: the CPU platform, the FSDP2 engines for CPU and the ``hf_cpu`` rollout
  (``cpu.py``), so verl's real trainer runs on a machine without an accelerator.

verl swallows plugin import errors (DEBUG log only), so ``main.py`` sets ``VERL_USE_EXTERNAL_PLUGINS=scsdpo``
and checks ``registered()`` itself, in the driver and in a Ray task.
"""

from __future__ import annotations

from . import cpu

cpu.activate()  # before anything asks verl for its platform; a no-op unless VERL_PLATFORM=cpu

from . import losses, trainer  # noqa: E402, F401  (import = registration)

PLUGIN_NAME = "scsdpo"
POLICY_LOSS_MODES: tuple[str, ...] = ("sdpo", "sc_sdpo")
TRAINER_MODES: tuple[str, ...] = (trainer.TRAINER_NAME,)


def registered() -> dict[str, bool]:
    """Which of our names verl's registries hold in *this* process (read from verl, not from us)."""
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

    status = {f"policy_loss:{name}": name in POLICY_LOSS_REGISTRY for name in POLICY_LOSS_MODES}
    status.update({f"trainer:{name}": name in TRAINER_REGISTRY for name in TRAINER_MODES})
    return status
