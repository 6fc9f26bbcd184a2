"""The workflow glue: config cross-checks, the run grid, run-dir preparation (stale results moved aside)."""

import json
from pathlib import Path

import pytest
import yaml

from scsdpo_verl.pipeline import (
    ConfigProblem,
    base_model_settings,
    check_config_references,
    coerce_to_schema,
    effective_train_config,
    export_final,
    grid_runs,
    load_schema,
    prepare_config,
    prepare_run_dir,
)

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml")


def _config(**changes):
    config = {
        "backend": "local",
        "models": {"qwen3-tiny": {"kind": "tiny", "name": "qwen3-tiny"}},
        "tasks": {"synthetic_science": {"kind": "synthetic_science"}},
        "methods": {"sdpo": {"algorithm": "sdpo"}, "sc_sdpo": {"algorithm": "sc_sdpo", "exponent": 0.5}},
        "seeds": [0, 1],
        "ablation": {"models": ["qwen3-tiny"], "tasks": ["synthetic_science"],
                     "methods": {"e1": {"algorithm": "sc_sdpo", "exponent": 1.0}}},
        "train": {"total_steps": 3},
    }
    config.update(changes)
    return config


def test_grid_runs_main_grid_plus_ablation():
    runs = grid_runs(_config())
    assert len(runs) == 1 * 1 * 2 * 2 + 1 * 1 * 1 * 2
    assert ("qwen3-tiny", "synthetic_science", "e1", 1) in runs


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ablation": {"models": ["gpt2"], "tasks": [], "methods": {}}}, "ablation.models: unknown model 'gpt2'"),
        ({"ablation": {"models": [], "tasks": [], "methods": {"sdpo": {"algorithm": "sdpo"}}}}, "already defined"),
        ({"train": {"seed": 3}}, "train.seed"),
        ({"train": {"total_step": 3}}, "unknown config key 'total_step'"),
        ({"train": {"lr": -1.0}}, "'lr' must be > 0"),
        ({"models": {"big": {"kind": "hf", "path": "Qwen/Qwen3-8B"}}, "ablation": {}}, "models.big"),
        ({"tasks": {"chem": {"kind": "science", "source": "reference"}}, "ablation": {}}, "tasks.chem.domain"),
        ({"tasks": {"tool": {"kind": "tooluse", "source": "local"}}, "ablation": {}}, "tasks.tool.train_file"),
        ({"tasks": {"sci": {"kind": "synthetic_science", "scorer": "reference"}}, "ablation": {}},
         "tasks.sci.scorer: applies to tool-use tasks only"),
        ({"base_model": {"warm_start_steps": 10, "copy_drill_steps": 8, "teacher_first_steps": 3}},
         r"^base_model: copy_drill_steps \+ teacher_first_steps \(11\) exceed warm_start_steps \(10\)"),
        # a model's own settings are checked merged over the top-level ones
        ({"base_model": {"warm_start_steps": 10, "copy_drill_steps": 8},
          "models": {"qwen3-tiny": {"kind": "tiny", "name": "qwen3-tiny", "base_model": {"teacher_first_steps": 3}}}},
         r"^models.qwen3-tiny.base_model: copy_drill_steps \+ teacher_first_steps \(11\) exceed"),
        ({"models": {"big": {"kind": "hf", "path": "Qwen/Qwen3-8B", "base_model": {"number_tokens": True}}},
          "ablation": {}, "backend": "verl"}, "models.big.base_model: kind 'hf' models have no base_model step"),
    ],
)
def test_config_problems_name_the_key(changes, match):
    with pytest.raises(ConfigProblem, match=match):
        check_config_references(_config(**changes))


@pytest.mark.parametrize(
    ("methods", "ablation_methods", "match"),
    [
        # keys are free labels, but one main-grid method per algorithm: the Δ row needs "the" SDPO run
        ({"a": {"algorithm": "sdpo"}, "b": {"algorithm": "sdpo", "normalize": "batch_sum"}}, {},
         "methods: a, b all have algorithm 'sdpo'"),
        ({"sdpo": {"algorithm": "sdpo"}}, {"g2": {"algorithm": "grpo"}}, "ablation.methods.g2: algorithm 'grpo'"),
        # defaults filled in: exponent 0.5 and batch_mean are the main grid's SC-SDPO again
        ({"sc": {"algorithm": "sc_sdpo", "exponent": 0.5}}, {"same": {"algorithm": "sc_sdpo"}},
         "ablation.methods.same: trains the same as methods.sc"),
        # sc_sdpo at exponent 0 is sdpo
        ({"s": {"algorithm": "sdpo"}}, {"zero": {"algorithm": "sc_sdpo", "exponent": 0}},
         "ablation.methods.zero: trains the same as methods.s"),
    ],
)
def test_method_roles_are_checked_whatever_the_keys(methods, ablation_methods, match):
    config = _config(methods=methods)
    config["ablation"] = {**config["ablation"], "methods": ablation_methods}
    with pytest.raises(ConfigProblem, match=match):
        check_config_references(config)


def test_free_method_keys_are_accepted():
    config = _config(methods={"baseline": {"algorithm": "grpo"}, "plain": {"algorithm": "sdpo"},
                              "scsdpo": {"algorithm": "sc_sdpo"}})
    check_config_references(config)  # no error: the analysis works from the algorithms


def test_command_line_strings_get_the_schema_types():
    # what `snakemake --config` hands over: nested values are strings (YAML BaseLoader)
    given = {"base_model": {"bf16": "false", "warm_start_steps": "10", "warm_start_lr": "3e-4"},
             "train": {"lr": "3e-4", "total_steps": "5", "unknown_key": "7"},
             "seeds": ["0", "1"], "evaluation": {"limit": "null", "backend": "hf"},
             "methods": {"m": {"algorithm": "sc_sdpo", "exponent": "1", "label": "1"}}}
    typed = coerce_to_schema(given, SCHEMA, SCHEMA)
    assert typed["base_model"] == {"bf16": False, "warm_start_steps": 10, "warm_start_lr": 3e-4}
    assert typed["train"] == {"lr": 3e-4, "total_steps": 5, "unknown_key": "7"}  # no schema: left to the trainer
    assert typed["seeds"] == [0, 1] and typed["evaluation"] == {"limit": None, "backend": "hf"}
    assert typed["methods"]["m"] == {"algorithm": "sc_sdpo", "exponent": 1, "label": "1"}  # label is a string
    assert type(typed["base_model"]["bf16"]) is bool and type(typed["train"]["total_steps"]) is int
    # an enum of a string and booleans: its string stays a string, the booleans written as text become booleans
    assert coerce_to_schema({"base_model": {"bf16": "auto"}}, SCHEMA, SCHEMA) == {"base_model": {"bf16": "auto"}}
    assert coerce_to_schema({"base_model": {"bf16": "TRUE"}}, SCHEMA, SCHEMA) == {"base_model": {"bf16": True}}
    # a string-or-null key: null written as text is null, any other text the string
    assert coerce_to_schema({"expected_results": "null"}, SCHEMA, SCHEMA) == {"expected_results": None}
    assert coerce_to_schema({"expected_results": "docs/x"}, SCHEMA, SCHEMA) == {"expected_results": "docs/x"}
    typed_file = coerce_to_schema({"base_model": {"bf16": True}, "seeds": [3]}, SCHEMA, SCHEMA)
    assert typed_file == {"base_model": {"bf16": True}, "seeds": [3]}  # a config file's values pass unchanged


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["base_model"].update(bf16="maybe"),
         "base_model.bf16: 'maybe' is not one of ['auto', True, False]"),
        (lambda c: c["train"].update(lr="-1"), "train.lr: -1 is less than or equal to the minimum of 0"),
        (lambda c: c.pop("models"), "config: 'models' is a required property"),
        (lambda c: c["methods"]["sdpo"].update(algorithm="ppo"), "methods.sdpo.algorithm: 'ppo' is not one of"),
    ],
)
def test_schema_problems_are_one_line_naming_the_key(change, message):
    config = {**_config(), "base_model": {"bf16": "true"}}
    change(config)
    with pytest.raises(ConfigProblem) as caught:
        prepare_config(config, SCHEMA)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"number_tokens": 3}, "models.olmo3-tiny.base_model.number_tokens: 3 is not of type 'boolean'"),
        ({"vocab": 512}, "models.olmo3-tiny.base_model: Additional properties are not allowed ('vocab'"),
        ({"warm_start_lr": "-1"}, "models.olmo3-tiny.base_model.warm_start_lr: -1 is less than or equal to"),
    ],
)
def test_a_models_own_base_model_settings_are_checked_by_the_schema(override, message):
    config = _config()
    config["models"]["olmo3-tiny"] = {"kind": "tiny", "name": "olmo3-tiny", "base_model": override}
    with pytest.raises(ConfigProblem) as caught:
        prepare_config(config, SCHEMA)
    assert str(caught.value).startswith(message)


def test_a_models_own_base_model_settings_go_over_the_top_level_ones_for_that_model_only():
    config = {**_config(), "base_model": {"warm_start_steps": "40", "number_tokens": "false"}}
    config["models"]["olmo3-tiny"] = {"kind": "tiny", "name": "olmo3-tiny",
                                      "base_model": {"number_tokens": "true", "warm_start_lr": "1e-3"}}
    prepare_config(config, SCHEMA)  # command-line text typed in the model's section too
    assert base_model_settings(config, "olmo3-tiny") == {"warm_start_steps": 40, "number_tokens": True,
                                                         "warm_start_lr": 1e-3}
    assert base_model_settings(config, "qwen3-tiny") == {"warm_start_steps": 40, "number_tokens": False}
    assert config["base_model"] == {"warm_start_steps": 40, "number_tokens": False}  # not changed in place


def test_effective_train_config_sets_method_and_sdpo_exponent_zero(tmp_path):
    kwargs = dict(model_path="m", task="synthetic_science", seed=1, run_dir=str(tmp_path / "r"),
                  train_path="a.parquet", val_path="b.parquet", threads=1)
    sdpo = effective_train_config(_config(), method="sdpo", **kwargs)
    assert sdpo["method"] == "sdpo" and sdpo["exponent"] == 0.0 and sdpo["total_steps"] == 3
    e1 = effective_train_config(_config(), method="e1", **kwargs)
    assert e1["method"] == "sc_sdpo" and e1["exponent"] == 1.0 and e1["seed"] == 1


def test_published_names_are_checked_against_the_config_and_the_file(tmp_path):
    from scsdpo_verl.pipeline import check_published_names

    repo = Path(__file__).resolve().parents[1]
    good = {**_config(), "reporting": {"published": {"models": {"qwen3-tiny": "Qwen3-8B"},
                                                     "benchmarks": {"synthetic_science": "Chemistry"}}}}
    check_published_names(good, repo)
    for change, message in (
        ({"models": {"qwen3-tiny": "Qwen9"}}, "reporting.published.models.qwen3-tiny: 'Qwen9' is not in"),
        ({"models": {"gpt": "Qwen3-8B"}}, "reporting.published.models.gpt: not a key of the config's models"),
        ({"benchmarks": {"chem": "Chemistry"}}, "reporting.published.benchmarks.chem: not a key of the config's tasks"),
        ({"file": "nowhere.yaml", "models": {}}, "reporting.published.file: .*nowhere.yaml not found"),
    ):
        bad = {**good, "reporting": {"published": {**good["reporting"]["published"], **change}}}
        with pytest.raises(ConfigProblem, match=message):
            check_published_names(bad, repo)


def test_one_tracking_section_drives_both_backends(tmp_path):
    from scsdpo_verl.pipeline import verl_tracking_overrides

    config = {**_config(), "tracking": {"logger": ["console", "wandb"], "project_name": "proj"}}
    kwargs = dict(model_path="m", task="synthetic_science", seed=1, run_dir=str(tmp_path / "r"),
                  train_path="a.parquet", val_path="b.parquet", threads=1, model="qwen3-tiny")
    local = effective_train_config(config, method="sdpo", **kwargs)
    assert (local["logger"], local["project_name"]) == (["console", "wandb"], "proj")
    assert local["experiment_name"] == "qwen3-tiny-synthetic_science-sdpo-seed1"
    assert verl_tracking_overrides(config, local["experiment_name"]) == [
        "trainer.logger=[console,wandb,file]", "trainer.project_name=proj",
        "trainer.experiment_name=qwen3-tiny-synthetic_science-sdpo-seed1"]
    # the default: console + TensorBoard
    assert effective_train_config(_config(), method="sdpo", **kwargs)["logger"] == ["console", "tensorboard"]
    with pytest.raises(ConfigProblem, match=r"train\.logger: set per run by the workflow"):
        check_config_references(_config(train={"logger": ["wandb"]}))


def test_prepare_run_dir_ignores_where_metrics_go(tmp_path):
    run = tmp_path / "seed0"
    config = {"lr": 1e-4, "run_dir": str(run), "logger": ["console"]}
    prepare_run_dir(run, config)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints" / "step_2").mkdir(parents=True)
    # a changed tracker: the finished run is kept (resumed at its last checkpoint), not moved aside
    assert prepare_run_dir(run, {**config, "logger": ["console", "wandb"]}) is True
    assert not list(tmp_path.glob("seed0.stale-*"))


def test_prepare_run_dir_resumes_same_config_and_moves_changed_config_aside(tmp_path):
    run = tmp_path / "seed0"
    config = {"lr": 1e-4, "run_dir": str(run), "resume": False}
    assert prepare_run_dir(run, config) is False
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints" / "step_2").mkdir(parents=True)
    assert prepare_run_dir(run, {**config, "resume": True}) is True  # same config: resume
    assert prepare_run_dir(run, {**config, "lr": 2e-4}) is False  # changed: moved aside, fresh dir
    stale = [p for p in tmp_path.iterdir() if p.name.startswith("seed0.stale-")]
    assert len(stale) == 1 and (stale[0] / "checkpoints" / "step_2").is_dir()
    assert run.is_dir() and not any(run.iterdir())


def test_export_final_copies_policy(tmp_path):
    policy = tmp_path / "run" / "checkpoints" / "step_3" / "policy"
    policy.mkdir(parents=True)
    (policy / "config.json").write_text(json.dumps({"a": 1}))
    out = export_final(tmp_path / "run", {"final_checkpoint": str(policy.parent)}, tmp_path / "run" / "final")
    assert json.loads((out / "config.json").read_text()) == {"a": 1}
    with pytest.raises(FileNotFoundError, match="no policy"):
        export_final(tmp_path / "run", {"final_checkpoint": str(tmp_path / "nothing")}, tmp_path / "x")


def _pinned_fixture_clone(tmp_path, monkeypatch):
    """A tiny fake 'clone' with two files, and REFERENCE_FILES pinned to their hashes."""
    from scsdpo_verl.tasks import reference

    clone = tmp_path / "clone"
    files = {"datasets/tooluse/test.json": b'{"a": 1}\n', "datasets/sciknoweval/physics/test.json": b'{"b": 2}\n'}
    pins = {}
    for rel, content in files.items():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_bytes(content)
        pins[rel] = {"sha256": reference.sha256_file(clone / rel), "git_blob_sha1": None}
    monkeypatch.setattr(reference, "REFERENCE_FILES", pins)
    return clone, files


def test_reference_splits_from_local_clone_verified(tmp_path, monkeypatch):
    from scsdpo_verl.pipeline import obtain_reference_splits

    clone, files = _pinned_fixture_clone(tmp_path, monkeypatch)
    written = obtain_reference_splits(tmp_path / "out", local_dir=clone, commit="0e6d5106abe6")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == sorted(files)


def test_reference_splits_mismatch_or_missing_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    from scsdpo_verl.pipeline import obtain_reference_splits
    from scsdpo_verl.tasks.reference import ReferenceDataError

    clone, _ = _pinned_fixture_clone(tmp_path, monkeypatch)
    (clone / "datasets/tooluse/test.json").write_bytes(b"tampered")
    with pytest.raises(ReferenceDataError, match=r"tooluse/test\.json: SHA-256"):
        obtain_reference_splits(tmp_path / "out", local_dir=clone)
    assert not (tmp_path / "out").exists()
    (clone / "datasets/tooluse/test.json").unlink()
    with pytest.raises(ReferenceDataError, match=r"tooluse/test\.json: reference file is missing"):
        obtain_reference_splits(tmp_path / "out", local_dir=clone)
    with pytest.raises(ConfigProblem, match=r"reference_data\.commit"):
        obtain_reference_splits(tmp_path / "out", local_dir=clone, commit="deadbeef")


def test_reference_splits_download_uses_pinned_commit_urls(tmp_path, monkeypatch):
    from scsdpo_verl.pipeline import obtain_reference_splits
    from scsdpo_verl.tasks.reference import REFERENCE_COMMIT

    _, files = _pinned_fixture_clone(tmp_path, monkeypatch)
    urls = []

    def fake_download(url, dest):
        urls.append(url)
        rel = url.split(REFERENCE_COMMIT + "/", 1)[1]
        dest.write_bytes(files[rel])

    obtain_reference_splits(tmp_path / "out", download=fake_download)
    assert len(urls) == 2 and all(REFERENCE_COMMIT in u for u in urls)


SDPO_FIXTURE_CLONE = Path(__file__).resolve().parent / "tasks" / "fixtures" / "sdpo"


def test_task_data_from_reference_splits_checks_pinned_counts(tmp_path, monkeypatch):
    from scsdpo_verl.pipeline import write_task_data
    from scsdpo_verl.tasks import reference
    from scsdpo_verl.tasks.schema import read_parquet

    spec = {"kind": "science", "source": "reference", "domain": "Chemistry"}
    # the tiny fixture clone does not have the reference's 1890/210 chemistry rows: a loud error naming the file
    with pytest.raises(reference.ReferenceDataError, match=r"chemistry/train\.json: 3 rows .* has 1890"):
        write_task_data(spec, tmp_path / "train.parquet", tmp_path / "test.parquet", reference_dir=SDPO_FIXTURE_CLONE)
    monkeypatch.setitem(reference.PINNED_SPLIT_COUNTS, ("chemistry", "train"), 3)
    monkeypatch.setitem(reference.PINNED_SPLIT_COUNTS, ("chemistry", "test"), 1)
    counts = write_task_data(spec, tmp_path / "train.parquet", tmp_path / "test.parquet",
                             reference_dir=SDPO_FIXTURE_CLONE)
    assert counts == {"train": 3, "test": 1}
    rows = read_parquet(tmp_path / "train.parquet")
    assert {r["data_source"] for r in rows} == {"sciknoweval/chemistry"}
    assert rows[0]["prompt"][0]["role"] == "system"  # the row's own system prompt, kept


@pytest.mark.parametrize("scorer", ["reference", "strict"])
def test_task_data_tooluse_rows_carry_the_scorer_and_count_gold_disagreements(tmp_path, monkeypatch, scorer):
    from scsdpo_verl.pipeline import write_task_data
    from scsdpo_verl.tasks import compute_score, reference
    from scsdpo_verl.tasks.schema import read_parquet

    monkeypatch.setitem(reference.PINNED_SPLIT_COUNTS, ("tooluse", "test"), 3)
    spec = {"kind": "tooluse", "source": "reference", "scorer": scorer}
    counts = write_task_data(spec, tmp_path / "train.parquet", tmp_path / "test.parquet",
                             reference_dir=SDPO_FIXTURE_CLONE)
    # the fixture's test item 20 has a nested gold input: the reference parser cannot read it, strict can
    assert counts["gold_disagreements"] == {"test": 1, "question_ids": ["tooluse/20"]}
    assert counts["scorer"] == scorer
    rows = read_parquet(tmp_path / "test.parquet")
    assert {row["extra_info"]["scorer"] for row in rows} == {scorer}
    scores = [compute_score(r["data_source"], r["extra_info"]["solution"], r["reward_model"]["ground_truth"],
                            r["extra_info"])["score"] for r in rows]
    assert scores == ([0.0, 1.0, 1.0] if scorer == "reference" else [1.0, 1.0, 1.0])


def test_task_data_synthetic_is_deterministic(tmp_path):
    from scsdpo_verl.pipeline import write_task_data

    spec = {"kind": "synthetic_tooluse", "train_size": 20, "test_size": 5}
    write_task_data(spec, tmp_path / "a_train.parquet", tmp_path / "a_test.parquet")
    write_task_data(spec, tmp_path / "b_train.parquet", tmp_path / "b_test.parquet")
    assert (tmp_path / "a_train.parquet").read_bytes() == (tmp_path / "b_train.parquet").read_bytes()


# ---- the verl backend's run directory ----
def _write_launch(path, records):
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in records))


def test_verl_metrics_from_several_launches_merge_by_step(tmp_path):
    from scsdpo_verl.pipeline import merge_verl_metrics

    # launch 1 logged steps 0-3 and died before step 3's checkpoint; launch 2 resumed from step 2 and redid 3, 4
    _write_launch(tmp_path / "verl_metrics.100.jsonl", [(0, {"a": 0.0}), (1, {"a": 1.0}), (2, {"a": 2.0}),
                                                        (3, {"a": 30.0})])
    _write_launch(tmp_path / "verl_metrics.200.jsonl", [(3, {"a": 3.0}), (4, {"a": 4.0})])
    assert merge_verl_metrics(tmp_path) == [{"step": s, "a": float(s)} for s in range(5)]
    assert [r["step"] for r in merge_verl_metrics(tmp_path, last_step=2)] == [0, 1, 2]
    (tmp_path / "verl_metrics.300.jsonl").write_text('{"step": 5}\n')
    with pytest.raises(ValueError, match=r"verl_metrics\.300\.jsonl, line 1"):
        merge_verl_metrics(tmp_path)


def test_verl_run_config_names_the_method_and_its_settings():
    from scsdpo_verl.pipeline import verl_run_config

    base = {"data": {"train_batch_size": 32, "seed": 1}, "trainer": {"total_training_steps": 10},
            "algorithm": {"norm_adv_by_std_in_grpo": False}}
    actor = {"optim": {"lr": 1e-5}, "loss_agg_mode": "seq-mean-token-mean"}
    sc = verl_run_config({**base, "actor_rollout_ref": {"rollout": {"n": 8}, "actor": {**actor, "policy_loss": {
        "loss_mode": "sc_sdpo", "sc_exponent": 1.0, "sc_normalize": "batch_max", "teacher_signal": "topk_jsd"}}}})
    assert (sc["method"], sc["exponent"], sc["normalize"], sc["rollouts_per_question"], sc["teacher_signal"]) == \
        ("sc_sdpo", 1.0, "batch_max", 8, "topk_jsd")
    sdpo = verl_run_config({**base, "actor_rollout_ref": {"rollout": {"n": 8}, "actor": {**actor, "policy_loss": {
        "loss_mode": "sdpo", "sc_exponent": 0.5}}}})
    assert (sdpo["method"], sdpo["exponent"]) == ("sdpo", 0.0)
    grpo = verl_run_config({**base, "actor_rollout_ref": {"rollout": {"n": 8}, "actor": {**actor, "policy_loss": {
        "loss_mode": "vanilla"}}}})
    assert grpo["method"] == "grpo" and "exponent" not in grpo


def test_finish_verl_run_without_a_checkpoint_names_the_run(tmp_path):
    from scsdpo_verl.pipeline import finish_verl_run

    with pytest.raises(FileNotFoundError, match="no global_step_"):
        finish_verl_run(tmp_path, tmp_path / "final", tmp_path / "summary.json")


def test_finish_verl_run_writes_flat_metrics_with_cumulative_step_time(tmp_path):
    """Two launches (the second redid step 2 after a resume), a step logged after the last checkpoint: the merged
    log keeps the later step 2, drops step 3, and adds the running sum of timing_s/step (0 at the step-0
    validation)."""
    import json
    import sys

    from scsdpo_verl.pipeline import finish_verl_run

    run = tmp_path / "run"
    (run / "global_step_2" / "actor").mkdir(parents=True)
    launches = [[{"step": 0, "data": {"val-core/x/acc/mean@2": 0.1}},
                 {"step": 1, "data": {"timing_s/step": 3.0}}, {"step": 2, "data": {"timing_s/step": 9.0}}],
                [{"step": 2, "data": {"timing_s/step": 4.0, "val-core/x/acc/mean@2": 0.5}},
                 {"step": 3, "data": {"timing_s/step": 5.0}}]]
    for i, records in enumerate(launches):
        (run / f"verl_metrics.{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    make_dir = [sys.executable, "-c", "import os, sys; os.makedirs(sys.argv[-1])"]
    summary = finish_verl_run(run, tmp_path / "final", tmp_path / "summary.json", merge_command=make_dir)
    merged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in merged] == [0, 1, 2]
    assert [r["timing_s/step_cumulative"] for r in merged] == [0.0, 3.0, 7.0]
    assert merged[2]["val-core/x/acc/mean@2"] == 0.5 and summary["steps"] == 2 and (tmp_path / "final").is_dir()


def test_write_benchmark_uses_snakemakes_layout(tmp_path):
    from scsdpo_verl.analysis.tables import read_benchmark
    from scsdpo_verl.pipeline import write_benchmark

    path = tmp_path / "b" / "x.tsv"
    write_benchmark(path, wall_s=3725.5, cpu_s=12.25, max_rss_mb=650.0)
    header, row = path.read_text().splitlines()
    assert header.split("\t") == ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                                   "mean_load", "cpu_time"]
    assert row.split("\t")[:3] == ["3725.50", "1:02:05", "650.00"] and row.split("\t")[-1] == "12.25"
    assert read_benchmark(path) == {"wall_s": 3725.5, "cpu_s": 12.25, "max_rss_mb": 650.0}  # the cost table's reader


def test_benchmarked_measures_the_block_not_the_process(tmp_path):
    import time

    from scsdpo_verl.analysis.tables import read_benchmark
    from scsdpo_verl.pipeline import benchmarked

    busy = time.process_time()
    while time.process_time() - busy < 0.3:  # CPU time spent before the block: not in its measurement
        pass
    with benchmarked(tmp_path / "sleep.tsv"):
        time.sleep(0.4)  # wall, almost no CPU
    with benchmarked(tmp_path / "spin.tsv"):
        start = time.process_time()
        while time.process_time() - start < 0.4:  # CPU
            pass
    sleep, spin = read_benchmark(tmp_path / "sleep.tsv"), read_benchmark(tmp_path / "spin.tsv")
    assert 0.4 <= sleep["wall_s"] < 2 and sleep["cpu_s"] < 0.2
    assert 0.4 <= spin["cpu_s"] < 1.5 and spin["wall_s"] >= 0.4
    assert spin["max_rss_mb"] > 10  # the process's peak, in MB (ru_maxrss is KiB on Linux)
    with pytest.raises(RuntimeError), benchmarked(tmp_path / "failed.tsv"):
        raise RuntimeError("a failed run")
    assert not (tmp_path / "failed.tsv").exists()  # no measurement of a run that did not finish


@pytest.mark.parametrize("study", ["config/cpu_study.yaml", "config/cpu_study_olmo3.yaml"])
def test_the_cpu_studies_make_their_bases_exactly_as_the_default_does(study):
    # their references were run after the default's, on its base checkpoints: a study whose base settings drift
    # from the default's trains a base of its own (10 min) and no longer matches its reference
    repo = Path(__file__).resolve().parents[1]

    def prepared(path):
        config = yaml.safe_load((repo / path).read_text())
        prepare_config(config, SCHEMA)
        return config

    default, config = prepared("config/default.yaml"), prepared(study)
    for model in config["models"]:
        assert config["models"][model] == default["models"][model], model
        assert base_model_settings(config, model) == base_model_settings(default, model), model
