"""config/README.md is generated from the config schema (scsdpo_verl.config_docs) and cannot drift from it."""

from __future__ import annotations

import copy

import yaml

from scsdpo_verl.config_docs import README, SCHEMA, main, render, schema_keys, undescribed


def test_config_readme_is_what_the_schema_gives():
    # if this fails: python -m scsdpo_verl.config_docs
    assert README.read_text() == render(yaml.safe_load(SCHEMA.read_text()))
    assert main(["--check"]) == 0


def test_every_key_of_the_schema_is_described_in_the_readme():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert undescribed(schema) == []
    text = README.read_text()
    keys = [path for path, _, _ in schema_keys(schema)]
    assert len(keys) > 60
    for path in keys:
        assert f"`{path}`" in text or f"## `{path}`" in text, path
    # free-key sections and the trainer's pass-through keys
    for fragment in ("`tasks.<name>.scorer`", "`reporting.budgets.unit`", "`tracking.logger`", "`train.val_k`",
                     "`verl.cpu`"):
        assert fragment in text, fragment


def test_a_changed_schema_is_noticed():
    schema = yaml.safe_load(SCHEMA.read_text())
    added = copy.deepcopy(schema)
    added["properties"]["evaluation"]["properties"]["new_key"] = {"type": "integer", "description": "x"}
    assert "`evaluation.new_key`" in render(added) and render(added) != README.read_text()
    bare = copy.deepcopy(schema)
    del bare["definitions"]["task"]["properties"]["scorer"]["description"]
    assert undescribed(bare) == ["tasks.<name>.scorer"]
