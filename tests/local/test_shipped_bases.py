"""Shipped base checkpoints: when a run may copy one instead of building it, and that the repository's are current.

The recipe a shipped base must match is the model, its base_model settings and the warm start's code; anything
else builds the base. The last test fails whenever the warm start's code or the default's base settings change
without the shipped bases being rebuilt (README, "Shipped bases").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scsdpo_verl.local import shipped_bases
from scsdpo_verl.local.shipped_bases import (
    ShippedBaseProblem,
    base_recipe,
    code_digest_text,
    find_shipped_base,
    provide_base,
    ship_base,
    warm_start_sources,
    write_recipe,
)
from scsdpo_verl.pipeline import base_model_settings, shipped_bases_dir

REPO = Path(__file__).resolve().parents[2]

SOURCE = '''"""Module docstring."""
import math


def area(r):
    """Docstring."""
    # a comment
    return math.pi * r ** 2
'''


@pytest.mark.parametrize(
    ("edited", "same"),
    [
        (SOURCE.replace("# a comment", "# another comment, longer"), True),
        (SOURCE.replace('"""Docstring."""', '"""Another docstring,\n    on two lines."""'), True),
        (SOURCE.replace('"""Module docstring."""\n', ""), True),
        (SOURCE.replace("r ** 2", "(r ** 2)").replace("\n\n\n", "\n\n"), True),  # layout only
        (SOURCE.replace("r ** 2", "r ** 3"), False),
        (SOURCE.replace("math.pi", "3.14159"), False),
        (SOURCE.replace('    """Docstring."""\n', '    """Docstring."""\n    x = "a string, not a docstring"\n'),
         False),
    ],
)
def test_the_code_digest_ignores_comments_docstrings_and_layout_not_code(edited, same):
    assert (code_digest_text(edited) == code_digest_text(SOURCE)) is same


def test_the_warm_start_sources_follow_its_imports_and_nothing_else():
    sources = warm_start_sources()
    # relative (from .data, from .rollout), absolute (core.teacher) and inside a function body (data.py imports
    # the task generators where it needs them), then transitively (the generators' own modules)
    for module in ("scsdpo_verl.local.models", "scsdpo_verl.local.data", "scsdpo_verl.local.rollout",
                   "scsdpo_verl.core.teacher", "scsdpo_verl.tasks.synthetic",
                   "scsdpo_verl.tasks.synthetic.tooluse", "scsdpo_verl.tasks.synthetic.science"):
        assert module in sources, module
        assert sources[module].is_file()
    # the RL objectives, the trainer and the analysis do not make a base: editing them keeps the shipped bases
    for module in ("scsdpo_verl.core.weights", "scsdpo_verl.core.distill", "scsdpo_verl.local.trainer",
                   "scsdpo_verl.analysis.expected", "scsdpo_verl"):
        assert module not in sources, module


SETTINGS = {"warm_start_steps": 10, "warm_start_batch": 2, "warm_start_lr": 2.5e-3, "teacher_fraction": 0.5,
            "copy_drill_steps": 4, "copy_target_loss": 0.3, "max_extra_drill_steps": 0, "teacher_first_steps": 0,
            "bf16": "auto", "number_tokens": False, "report_questions": 2, "seed": 0}
SPEC = {"kind": "tiny", "name": "qwen3-tiny"}


def _fake_base(directory: Path, weights: bytes = b"weights") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "base_report.json").write_text(json.dumps({"model": "qwen3-tiny", "seconds": 12.0}))


def test_a_shipped_base_is_used_only_for_its_own_recipe(tmp_path):
    recipe = base_recipe(SPEC, {**SETTINGS, "shipped_dir": "bases"}, digest="abc")
    assert "shipped_dir" not in recipe["settings"]  # where to look is not what is built
    _fake_base(tmp_path / "bases" / "qwen3-tiny")
    write_recipe(tmp_path / "bases" / "qwen3-tiny", recipe, {"commit": "1234567890ab", "cpu": "AMD EPYC"})

    found, why = find_shipped_base(tmp_path / "bases", "qwen3-tiny", recipe)
    assert found == tmp_path / "bases" / "qwen3-tiny"
    assert "1234567890ab" in why and "AMD EPYC" in why

    found, why = find_shipped_base(None, "qwen3-tiny", recipe)
    assert found is None and "shipped_dir is null" in why
    found, why = find_shipped_base(tmp_path / "bases", "olmo3-tiny", recipe)
    assert found is None and "olmo3-tiny" in why and "not found" in why

    other_lr = base_recipe(SPEC, {**SETTINGS, "warm_start_lr": 5e-3}, digest="abc")
    found, why = find_shipped_base(tmp_path / "bases", "qwen3-tiny", other_lr)
    assert found is None and "base_model.warm_start_lr: 0.005 here, 0.0025 shipped" in why
    assert "code" not in why  # only what differs is named
    other_code = base_recipe(SPEC, SETTINGS, digest="abd")
    found, why = find_shipped_base(tmp_path / "bases", "qwen3-tiny", other_code)
    assert found is None and "warm start's code" in why and "base_model." not in why
    new_key = base_recipe(SPEC, {**SETTINGS, "new_setting": 1}, digest="abc")  # a setting added to the schema
    assert "base_model.new_setting: 1 here, '<unset>' shipped" in find_shipped_base(
        tmp_path / "bases", "qwen3-tiny", new_key)[1]
    other_model = base_recipe({"kind": "tiny", "name": "olmo3-tiny"}, SETTINGS, digest="abc")
    assert "model: 'olmo3-tiny' here, 'qwen3-tiny' shipped" in find_shipped_base(
        tmp_path / "bases", "qwen3-tiny", other_model)[1]


def test_a_damaged_shipped_base_is_refused_not_replaced(tmp_path):
    recipe = base_recipe(SPEC, SETTINGS, digest="abc")
    base = tmp_path / "bases" / "qwen3-tiny"
    _fake_base(base)
    write_recipe(base, recipe, {})
    (base / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    with pytest.raises(ShippedBaseProblem, match=r"qwen3-tiny: model.safetensors do not match the sha256"):
        find_shipped_base(tmp_path / "bases", "qwen3-tiny", recipe)
    (base / "model.safetensors").write_bytes(b"weights")
    (base / "extra.bin").write_bytes(b"?")  # a file the recipe does not list
    with pytest.raises(ShippedBaseProblem, match=r"extra\.bin"):
        find_shipped_base(tmp_path / "bases", "qwen3-tiny", recipe)


def test_provide_base_builds_records_ships_then_copies(tmp_path, monkeypatch):
    builds = []

    def fake_make_base(name, out_dir, **kwargs):
        builds.append(kwargs)
        _fake_base(Path(out_dir), weights=f"weights lr={kwargs['sft_lr']}".encode())
        return json.loads((Path(out_dir) / "base_report.json").read_text())

    monkeypatch.setattr("scsdpo_verl.local.models.make_base", fake_make_base)
    built = tmp_path / "results" / "base"
    report = provide_base(SPEC, SETTINGS, built, shipped_dir=None)
    assert len(builds) == 1 and builds[0]["sft_steps"] == 10 and builds[0]["copy_drill_steps"] == 4
    assert report["base"] == "built by this run"
    recorded = json.loads((built / "recipe.json").read_text())
    assert recorded["settings"] == SETTINGS and recorded["sources"] == shipped_bases.sources_digest()
    assert set(recorded["files"]) == {"model.safetensors", "base_report.json"}
    assert recorded["made"]["cpu"] and recorded["made"]["seconds"] == 12.0

    ship_base(built, tmp_path / "bases", "qwen3-tiny")
    used = tmp_path / "results2" / "base"
    report = provide_base(SPEC, {**SETTINGS, "shipped_dir": "anything"}, used, shipped_dir=tmp_path / "bases")
    assert len(builds) == 1  # copied, not built
    assert report["base"].startswith("shipped (bases/qwen3-tiny, built at commit")
    assert (used / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
    assert json.loads((used / "base_report.json").read_text())["base"] == report["base"]

    provide_base(SPEC, {**SETTINGS, "warm_start_lr": 1e-3}, tmp_path / "results3" / "base",
                 shipped_dir=tmp_path / "bases")
    assert len(builds) == 2 and builds[1]["sft_lr"] == 1e-3  # another recipe: built


def test_only_a_base_built_by_this_code_with_its_recorded_files_is_shipped(tmp_path):
    built = tmp_path / "base"
    _fake_base(built)
    with pytest.raises(FileNotFoundError, match=r"recipe\.json not found"):
        ship_base(built, tmp_path / "bases", "qwen3-tiny")
    write_recipe(built, base_recipe(SPEC, SETTINGS, digest="not this code"), {})
    with pytest.raises(ValueError, match="other warm-start code"):
        ship_base(built, tmp_path / "bases", "qwen3-tiny")
    write_recipe(built, base_recipe(SPEC, SETTINGS), {})
    (built / "model.safetensors").write_bytes(b"changed after the build")
    with pytest.raises(ValueError, match="do not match the sha256"):
        ship_base(built, tmp_path / "bases", "qwen3-tiny")
    assert not (tmp_path / "bases").exists()


def _ship_over(tmp_path, weights: bytes, report: dict) -> dict:
    """Ship a base made at commit "old" from other code, then a rebuild by this code at commit "new" with
    ``weights`` and ``report``; the shipped recipe after it."""
    shipped = tmp_path / "bases" / "qwen3-tiny"
    _fake_base(shipped)
    write_recipe(shipped, base_recipe(SPEC, SETTINGS, digest="the old code"), {"commit": "old", "seconds": 12.0})
    built = tmp_path / "results" / "base"
    _fake_base(built, weights)
    (built / "base_report.json").write_text(json.dumps(report))
    write_recipe(built, base_recipe(SPEC, SETTINGS), {"commit": "new", "seconds": report["seconds"]})
    assert find_shipped_base(tmp_path / "bases", "qwen3-tiny", base_recipe(SPEC, SETTINGS))[0] is None
    ship_base(built, tmp_path / "bases", "qwen3-tiny")
    assert find_shipped_base(tmp_path / "bases", "qwen3-tiny", base_recipe(SPEC, SETTINGS))[0] == shipped
    return json.loads((shipped / "recipe.json").read_text())


def test_a_rebuild_that_is_the_shipped_base_bit_for_bit_keeps_where_it_was_made(tmp_path):
    recipe = _ship_over(tmp_path, b"weights", {"model": "qwen3-tiny", "seconds": 13.5})  # only the seconds differ
    assert recipe["made"] == {"commit": "old", "seconds": 12.0}  # the references name this commit
    assert recipe["sources"] == shipped_bases.sources_digest()
    assert recipe["rebuilt"] == [{"commit": "new", "seconds": 13.5, "sources": shipped_bases.sources_digest()}]
    report = json.loads((tmp_path / "bases" / "qwen3-tiny" / "base_report.json").read_text())
    assert report["seconds"] == 12.0  # the shipped files stay, matching their recorded sha256


@pytest.mark.parametrize("weights, report", [
    (b"other weights", {"model": "qwen3-tiny", "seconds": 12.0}),
    (b"weights", {"model": "qwen3-tiny", "seconds": 12.0, "pass_rate": 0.5}),
])
def test_a_rebuild_that_differs_replaces_the_shipped_base(tmp_path, weights, report):
    recipe = _ship_over(tmp_path, weights, report)
    assert recipe["made"]["commit"] == "new" and "rebuilt" not in recipe
    assert (tmp_path / "bases" / "qwen3-tiny" / "model.safetensors").read_bytes() == weights


def _default_config() -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    return config


def test_the_shipped_bases_are_the_ones_the_default_would_build():
    # fails when the warm start's code or the default's base settings changed and bases/ was not rebuilt:
    # README, "Shipped bases", says how (about 20 minutes on a 2-core CPU)
    config = _default_config()
    tiny = [name for name, spec in config["models"].items() if spec["kind"] == "tiny"]
    assert tiny == ["qwen3-tiny", "olmo3-tiny"]
    for model in tiny:
        settings = base_model_settings(config, model)
        shipped_dir = shipped_bases_dir(settings, REPO)
        assert shipped_dir == REPO / "bases"
        found, why = find_shipped_base(shipped_dir, config["models"][model]["name"],
                                       base_recipe(config["models"][model], settings))
        assert found is not None, why
        report = json.loads((found / "base_report.json").read_text())
        assert report["model"] == model and report["number_tokens"] == settings["number_tokens"]


def test_the_ship_bases_command_copies_the_built_bases(tmp_path, capsys):
    from scsdpo_verl.pipeline import main

    built = tmp_path / "results" / "models" / "qwen3-tiny" / "base"
    _fake_base(built)
    (built / ".snakemake_timestamp").write_text("")
    write_recipe(built, base_recipe(SPEC, SETTINGS), {"commit": "abc"})
    assert main(["ship-bases", "qwen3-tiny", "--results", str(tmp_path / "results"), "--to",
                 str(tmp_path / "bases")]) == 0
    shipped = tmp_path / "bases" / "qwen3-tiny"
    assert sorted(p.name for p in shipped.iterdir()) == ["base_report.json", "model.safetensors", "recipe.json"]
    assert find_shipped_base(tmp_path / "bases", "qwen3-tiny", base_recipe(SPEC, SETTINGS))[0] == shipped
    assert "qwen3-tiny" in capsys.readouterr().out
