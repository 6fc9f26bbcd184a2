"""The plugin registers through verl's ``verl.plugins`` entry point: fresh process and a local Ray worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = (
    "import json, verl\n"
    "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY\n"
    "from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY\n"
    "print(json.dumps({'sdpo': 'sdpo' in POLICY_LOSS_REGISTRY, 'sc_sdpo': 'sc_sdpo' in POLICY_LOSS_REGISTRY,\n"
    "                  'trainer': 'scsdpo_sync' in TRAINER_REGISTRY}))\n"
)


def run_probe(plugins: str | None) -> dict[str, bool]:
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    if plugins is not None:
        env["VERL_USE_EXTERNAL_PLUGINS"] = plugins
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("plugins", [None])
def test_plain_import_verl_registers(plugins):
    assert run_probe(plugins) == {"sdpo": True, "sc_sdpo": True, "trainer": True}


def test_nothing_registers_when_plugins_are_off():
    """The control: without the entry point nothing registers, so the test above can fail."""
    assert run_probe("none") == {"sdpo": False, "sc_sdpo": False, "trainer": False}


def test_launcher_refuses_a_plugin_list_without_us(monkeypatch):
    from scsdpo_verl.verl_plugin.main import enable_plugin_env

    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "other_plugin")
    with pytest.raises(SystemExit, match="excludes"):
        enable_plugin_env()
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "auto")
    enable_plugin_env()
    assert os.environ["VERL_USE_EXTERNAL_PLUGINS"] == "scsdpo"


def test_registers_inside_a_ray_worker(monkeypatch):
    ray = pytest.importorskip("ray")
    from scsdpo_verl.verl_plugin.main import check_in_ray_worker

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "scsdpo")
    try:
        status = check_in_ray_worker()  # ray.init(num_cpus=1, include_dashboard=False) ... ray.shutdown()
    except (RuntimeError, ConnectionError, OSError) as error:  # Ray cannot start in this sandbox
        pytest.skip(f"local Ray could not start: {error}")
    assert status == {"policy_loss:sdpo": True, "policy_loss:sc_sdpo": True, "trainer:scsdpo_sync": True}
