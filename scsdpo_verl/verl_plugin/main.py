"""Launcher: ``python -m scsdpo_verl.verl_plugin.main --config-name {grpo,sdpo,sc_sdpo} [key=value ...]``.

What it does, in order:
1. sets ``VERL_USE_EXTERNAL_PLUGINS=scsdpo`` (verl then loads exactly our entry point) and imports verl;
   verl swallows plugin import errors, so we import the plugin ourselves and check verl's registries;
2. composes our config on verl 0.9.1's ``ppo_trainer`` with the overrides, rejects keys verl does not know
   and builds verl's dataclasses (fails before any GPU is touched);
3. forwards the plugin variable to every Ray process through ``ray_kwargs.ray_init.runtime_env`` and runs
   verl's own ``run_ppo`` with its v1 task runner (``trainer.v1.trainer_mode`` picks ``scsdpo_sync``).

``--check`` stops after step 2 and additionally checks the registration inside a local Ray worker.
With ``VERL_PLATFORM=cpu`` in the environment (verl's own platform override; it must be set before Python
starts, because verl resolves its platform while it is imported) the launcher runs verl's real trainer on a
machine without an accelerator (tests, CI, laptops; ``cpu.py``): ``cpu.CPU_OVERRIDES`` come before the user's
overrides and the variable is forwarded to every Ray process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

PLUGIN_ENV = "VERL_USE_EXTERNAL_PLUGINS"
PLATFORM_ENV = "VERL_PLATFORM"  # verl's own platform override; "cpu" selects the plugin's CPU platform
# where verl's file and TensorBoard loggers write: read inside the TaskRunner actor, which on a multi-node cluster
# started by `ray start` does not inherit the launcher's environment
FORWARDED_VERL_ENV = ("VERL_FILE_LOGGER_PATH", "VERL_FILE_LOGGER_ROOT", "TENSORBOARD_DIR")


def enable_plugin_env(plugin_name: str = "scsdpo") -> None:
    """Set ``VERL_USE_EXTERNAL_PLUGINS`` so verl loads our plugin; refuse a value that would skip it."""
    current = os.environ.get(PLUGIN_ENV)
    if current is None or current.strip().lower() in ("", "auto"):
        os.environ[PLUGIN_ENV] = plugin_name
        return
    names = {name.strip() for name in current.split(",")}
    if plugin_name not in names:
        raise SystemExit(f"{PLUGIN_ENV}={current!r} excludes the '{plugin_name}' plugin; unset it or add it")


def assert_registered() -> dict[str, bool]:
    """Import verl (loads the entry point), then the plugin itself (surfaces its real import error)."""
    import verl  # noqa: F401

    import scsdpo_verl.verl_plugin as plugin

    status = plugin.registered()
    missing = [name for name, ok in status.items() if not ok]
    if missing:
        raise RuntimeError(f"scsdpo plugin imported but verl's registries lack {missing}")
    return status


def check_in_ray_worker() -> dict[str, bool]:
    """Registration as seen by a fresh Ray worker process (one CPU, no dashboard; Ray shut down after)."""
    import ray

    def probe() -> dict[str, bool]:
        import verl  # noqa: F401  (the entry point registers the plugin here)
        from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

        return {
            "policy_loss:sdpo": "sdpo" in POLICY_LOSS_REGISTRY,
            "policy_loss:sc_sdpo": "sc_sdpo" in POLICY_LOSS_REGISTRY,
            "trainer:scsdpo_sync": "scsdpo_sync" in TRAINER_REGISTRY,
        }

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": {PLUGIN_ENV: os.environ[PLUGIN_ENV]}})
    try:
        return ray.get(ray.remote(num_cpus=1)(probe).remote())
    finally:
        if started:
            ray.shutdown()


def prepare_config(config_name: str, overrides: Sequence[str], check_paths: bool = True):
    """Composed, key-checked config with the plugin variables forwarded to Ray's runtime_env.

    ``check_paths`` refuses a missing model directory, data or reward file and an unregistered rollout name
    (off for ``--check``, which checks registration and keys with placeholder paths).

    In CPU mode (``VERL_PLATFORM=cpu``) the CPU overrides come first (a user's override wins) and the result is
    checked for what CPU mode needs, naming the key."""
    from omegaconf import open_dict

    from .configs import check_dataclasses, check_inputs, check_known_keys, compose_config
    from .cpu import CPU_OVERRIDES, check_platform_config, cpu_mode_requested

    cpu_mode = cpu_mode_requested()
    config = compose_config(config_name, [*CPU_OVERRIDES, *overrides] if cpu_mode else overrides)
    check_known_keys(config, config_name)
    check_dataclasses(config)
    check_platform_config(config)
    if check_paths:
        check_inputs(config)
    # the plugin's switches reach every Ray process: the plugin list, CPU mode, the loggers' paths, SCSDPO_* variables
    forwarded = {PLUGIN_ENV: os.environ[PLUGIN_ENV]}
    forwarded.update({name: value for name, value in os.environ.items()
                      if name.startswith("SCSDPO_") or name in FORWARDED_VERL_ENV})
    if cpu_mode:
        forwarded[PLATFORM_ENV] = os.environ[PLATFORM_ENV]
    with open_dict(config):
        runtime_env = config.ray_kwargs.ray_init.runtime_env
        env_vars = runtime_env.get("env_vars", None) or {}
        runtime_env.env_vars = {**env_vars, **forwarded}
        if cpu_mode and config.ray_kwargs.ray_init.get("num_gpus", None) is None:
            # verl's placement groups count accelerators: one logical GPU per worker process
            config.ray_kwargs.ray_init.num_gpus = config.trainer.n_gpus_per_node * config.trainer.nnodes
    return config


VERL_CONFIG_FILE = "verl_config.yaml"


def save_config(config) -> str:
    """The composed, resolved config beside the checkpoints (``<trainer.default_local_dir>/verl_config.yaml``)."""
    from omegaconf import OmegaConf

    directory = config.trainer.default_local_dir
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, VERL_CONFIG_FILE)
    OmegaConf.save(config, path, resolve=True)
    return path


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scsdpo_verl.verl_plugin.main", description=__doc__.split("\n")[0])
    parser.add_argument("--config-name", default="sdpo", choices=("grpo", "sdpo", "sc_sdpo"))
    parser.add_argument("--check", action="store_true", help="check registration and config, do not train")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. actor_rollout_ref.model.path=/ckpt")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .cpu import check_cpu_mode

    check_cpu_mode()
    enable_plugin_env()
    print(f"[scsdpo] registered in driver: {assert_registered()}")
    config = prepare_config(args.config_name, args.overrides, check_paths=not args.check)
    if args.check:
        worker_status = check_in_ray_worker()
        print(f"[scsdpo] registered in a Ray worker: {worker_status}")
        print(f"[scsdpo] config '{args.config_name}' composes on verl's ppo_trainer and converts to its dataclasses")
        return 0 if all(worker_status.values()) else 1

    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    save_config(config)
    run_ppo(config, task_runner_class=TaskRunnerV1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
