"""Config validation: every error names the offending key (and the file it came from)."""

from __future__ import annotations

import pytest

from scsdpo_verl.local.config import ConfigError, TrainConfig, load_config
from scsdpo_verl.local.train import main


def test_defaults_are_valid_and_overrides_are_typed():
    cfg = load_config(None, ["lr=3e-4", "method=grpo", "add_tail=false", "total_steps=7"])
    assert (cfg.lr, cfg.method, cfg.add_tail, cfg.total_steps) == (3e-4, "grpo", False, 7)
    assert TrainConfig().method == "sc_sdpo"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lr=-1e-4"], "'lr' must be > 0"),
        (["lr=abc"], "'lr' must be of type float"),
        (["topk=1.5"], "'topk' must be of type int"),
        (["learning_rate=1e-4"], "unknown config key 'learning_rate'"),
        (["method=ppo"], "'method' must be one of"),
        (["normalize=mean"], "'normalize' must be one of"),
        (["rollouts_per_question=1"], "'rollouts_per_question' must be >= 2"),
        (["top_p=1.5"], "'top_p' must be in (0, 1]"),
        (["val_questions=100", "val_size=10"], "'val_questions' must be <= val_size"),
        (["add_tail=maybe"], "'add_tail' must be of type bool"),
        (["micro_batch_size=-1"], "'micro_batch_size' must be >= 0"),
        (["lr"], "must look like key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: sdpo\nlrate: 0.1\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown config key 'lrate'"):
        load_config(path)
    path.write_text("method: sdpo\nlr: true\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: config key 'lr' must be of type float"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)
    path.write_text("method: sdpo\nlr: 1.0e-3\n")
    assert load_config(path, ["method=grpo"]).method == "grpo"  # overrides win over the file


def test_dataclass_rejects_wrong_types_directly():
    with pytest.raises(ConfigError, match="'total_steps' must be of type int"):
        TrainConfig(total_steps=True)


def test_cli_reports_config_errors(capsys):
    assert main(["lr=-1"]) == 2
    assert "'lr' must be > 0" in capsys.readouterr().err


def test_logger_names_are_verls_tracking_backends():
    from verl.utils.tracking import Tracking

    from scsdpo_verl.local.config import LOGGERS

    assert set(LOGGERS) == set(Tracking.supported_backend)
    assert load_config(None, ["logger=[console, tensorboard]"]).logger == ["console", "tensorboard"]
    assert load_config(None, ["logger=console,wandb"]).logger == ["console", "wandb"]
    assert load_config(None, ["logger=[]"]).logger == []
    with pytest.raises(ConfigError, match="config key 'logger' must name verl's tracking backends"):
        load_config(None, ["logger=[tb]"])
