"""Glue between the Snakemake workflow and the package: the logic behind the thin ``script:`` rules.

Everything here is importable and tested (tests/test_pipeline.py); the rule scripts only unpack the
``snakemake`` object and call these functions.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SYNTHETIC_KINDS = ("synthetic_science", "synthetic_tooluse")
TOOLUSE_KINDS = ("tooluse", "synthetic_tooluse")  # the task kinds a ``scorer`` applies to
# Keys of the trainer config the workflow sets per run; a user may not set them in config["train"].
PER_RUN_TRAIN_KEYS = ("run_dir", "seed", "model_path", "task", "method", "exponent", "normalize", "threads",
                      "train_path", "val_path", "resume", "logger", "project_name", "experiment_name")
# the trainer keys that only say where metrics are sent (config section ``tracking``): not part of what a run computes
TRACKING_TRAIN_KEYS = ("logger", "project_name", "experiment_name")
FIGURE_NAMES = (
    "fig1_learnability",
    "fig2_training_curves",
    "fig3_final_accuracy",
    "fig4_curriculum",
    "fig5_weight_share",
    "fig6_stability",
    "fig7_ablation",
    "fig8_gains_by_difficulty",
    "fig9_paper_vs_this_run",
)
TABLE_NAMES = ("main_table", "gains", "ablation_table", "cost_table", "paper_comparison", "tooluse_scorers")


class ConfigProblem(ValueError):
    """A workflow config that passes the schema but is inconsistent; the message names the key."""


# ---------------------------------------------------------------------------------------------- schema + overrides

_INTEGER = re.compile(r"[-+]?\d+")
_TRUE, _FALSE, _NULL = ("true", "yes", "on"), ("false", "no", "off"), ("null", "none", "~", "")


def resolve_schema_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local ``$ref`` pointers (``#/definitions/x``) of the config schema."""
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _allowed_types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type")
    if declared is not None:
        return {declared} if isinstance(declared, str) else set(declared)
    if "enum" in schema:  # an enum of strings declares strings; mixed enums (e.g. with null) name their types
        kinds = {"null" if v is None else "boolean" if isinstance(v, bool) else
                 "number" if isinstance(v, (int, float)) else "string" for v in schema["enum"]}
        return kinds
    return set()


def _coerce_scalar(text: str, types: set[str]) -> Any:
    """The typed value of a command-line string where the schema expects a non-string; else the string."""
    lowered = text.strip().lower()
    if "null" in types and lowered in _NULL:  # also for [string, null]: `expected_results=null` means none
        return None
    if "string" in types or not types:
        return text
    if "boolean" in types and lowered in _TRUE + _FALSE:
        return lowered in _TRUE
    if "integer" in types and _INTEGER.fullmatch(text.strip()):
        return int(text)
    if "number" in types:
        try:
            value = float(text)
        except ValueError:
            return text
        return int(value) if _INTEGER.fullmatch(text.strip()) else value
    return text


def coerce_to_schema(value: Any, schema: Mapping[str, Any] | None, root: Mapping[str, Any]) -> Any:
    """``value`` with strings converted to the boolean/integer/number/null types ``schema`` declares there.

    ``snakemake --config key=value`` reads nested values with YAML's BaseLoader, so ``base_model={bf16: false}``
    arrives as the string 'false' and ``train={lr: 3e-4}`` as '3e-4'; the schema says what they mean. Values
    of a config file are already typed and pass through unchanged; a string that fits no declared type stays a
    string, and validation then names its key.
    """
    if schema is None:
        return value
    schema = resolve_schema_ref(schema, root)
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: coerce_to_schema(item, properties.get(key, extra if isinstance(extra, Mapping) else None), root)
                for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [coerce_to_schema(item, items if isinstance(items, Mapping) else None, root) for item in value]
    if isinstance(value, str):
        types = _allowed_types(schema)
        if "enum" in schema and value not in schema["enum"]:  # e.g. 'false' for an enum [auto, true, false]
            types = types - {"string"}
        return _coerce_scalar(value, types)
    return value


def load_schema(path: str | Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def load_workflow_config(path: str | Path) -> dict[str, Any]:
    """A config file as the workflow sees it: validated against the schema, defaults filled in (common.smk)."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ConfigProblem(f"{path}: expected a mapping of config keys")
    schema_path = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    prepare_config(config, load_schema(schema_path))
    validate(config, schema=str(schema_path), set_default=True)
    return config


def schema_problem(config: Mapping[str, Any], schema: Mapping[str, Any], where: str = "") -> str | None:
    """The most relevant schema violation as one line naming the key (``train.lr: -1 is less than ...``);
    ``where`` is the key ``config`` sits at in the whole config (``models.m.base_model``)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join([*([where] if where else []), *(str(part) for part in error.absolute_path)]) or "config"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{key}: {message}"


def prepare_config(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Type the command-line overrides in place and fail with one line naming the key on a schema violation.

    Runs before Snakemake's own ``validate`` (which fills in the defaults), whose error on failure is the whole
    schema (hundreds of lines) rather than the key.
    """
    coerced = coerce_to_schema(config, schema, schema)
    config.clear()
    config.update(coerced)
    problem = schema_problem(config, schema)
    if problem is not None:
        raise ConfigProblem(problem)
    # a model's own base_model settings: the top-level section's keys and types (the schema holds them once)
    base_schema = {**schema["properties"]["base_model"], "definitions": schema.get("definitions", {})}
    for name, spec in config.get("models", {}).items():
        if "base_model" in spec:
            spec["base_model"] = coerce_to_schema(spec["base_model"], base_schema, schema)
            problem = schema_problem(spec["base_model"], base_schema, where=f"models.{name}.base_model")
            if problem is not None:
                raise ConfigProblem(problem)


def base_model_settings(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The base_model settings ``model``'s base checkpoint is made with: the top-level section, then the
    model's own ``base_model`` keys over it."""
    return {**config.get("base_model", {}), **config["models"][model].get("base_model", {})}


# ---------------------------------------------------------------------------------------------- cross-key checks

# The analysis finds each role (the GRPO, SDPO and SC-SDPO runs of the main grid) by algorithm, not by key.
SDPO_FAMILY = ("sdpo", "sc_sdpo")


def method_settings(spec: Mapping[str, Any]) -> tuple[str, float, str]:
    """(algorithm, exponent, normalizer) a method trains with, after the defaults (SDPO is exponent 0)."""
    algorithm = spec["algorithm"]
    if algorithm == "grpo":
        return algorithm, 0.0, "-"
    exponent = 0.0 if algorithm == "sdpo" else float(spec.get("exponent", 0.5))
    return algorithm, exponent, spec.get("normalize", "batch_mean")


def check_method_roles(config: Mapping[str, Any]) -> None:
    """Method keys are free labels; what the tables and figures use is each method's algorithm and settings.

    So: one main-grid method per algorithm (the Δ SC-SDPO − SDPO row and the method colours need to know which
    run is "the" SDPO run), ablation variants of the SDPO family only (the ablation table and figure 7 vary the
    SC weight), and no two methods that would train the same thing.
    """
    by_algorithm: dict[str, list[str]] = {}
    for name, spec in config["methods"].items():
        by_algorithm.setdefault(spec["algorithm"], []).append(name)
    for algorithm, names in by_algorithm.items():
        if len(names) > 1:
            raise ConfigProblem(f"methods: {', '.join(names)} all have algorithm '{algorithm}'; the main grid holds "
                                "one method per algorithm: put the variants under ablation.methods")
    seen: dict[tuple[str, float, str], str] = {}
    ablation = config.get("ablation", {}).get("methods", {})
    for section, methods in (("methods", config["methods"]), ("ablation.methods", ablation)):
        for name, spec in methods.items():
            if section == "ablation.methods" and spec["algorithm"] not in SDPO_FAMILY:
                raise ConfigProblem(f"ablation.methods.{name}: algorithm '{spec['algorithm']}'; the ablation varies "
                                    "the SC weight, so its methods are sdpo or sc_sdpo")
            algorithm, exponent, normalize = method_settings(spec)
            # sc_sdpo at exponent 0 is sdpo bit for bit (tests/local/test_trainer.py): one family, one key
            settings = ("grpo" if algorithm == "grpo" else "sdpo-family", exponent, normalize)
            if settings in seen:
                raise ConfigProblem(f"{section}.{name}: trains the same as {seen[settings]} (exponent "
                                    f"{exponent:g}, normalize {normalize})")
            seen[settings] = f"{section}.{name}"


def published_numbers_file(config: Mapping[str, Any], base_dir: str | Path) -> Path:
    """``reporting.published.file`` (config/published.yaml by default), relative to ``base_dir`` unless absolute."""
    path = Path(config.get("reporting", {}).get("published", {}).get("file", "config/published.yaml"))
    return path if path.is_absolute() else Path(base_dir) / path


def shipped_bases_dir(settings: Mapping[str, Any], base_dir: str | Path) -> Path | None:
    """A model's ``base_model.shipped_dir`` (``base_model_settings``), relative to ``base_dir`` unless absolute."""
    value = settings.get("shipped_dir")
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(base_dir) / path


def check_published_names(config: Mapping[str, Any], base_dir: str | Path) -> None:
    """``reporting.published``: the mapped keys are the config's models and tasks, the names are in the file
    (read here with yaml alone: the full check, analysis.published, runs in the tables rule)."""
    import yaml

    spec = config.get("reporting", {}).get("published", {})
    path = published_numbers_file(config, base_dir)
    if not path.is_file():
        raise ConfigProblem(f"reporting.published.file: {path} not found")
    tables = (yaml.safe_load(path.read_text()) or {}).get("tables") or []
    known = {"models": {t.get("model") for t in tables},
             "benchmarks": {b for t in tables for b in t.get("benchmarks") or []}}
    for section, ours in (("models", config["models"]), ("benchmarks", config["tasks"])):
        for key, name in spec.get(section, {}).items():
            if key not in ours:
                raise ConfigProblem(f"reporting.published.{section}.{key}: not a key of the config's "
                                    f"{'models' if section == 'models' else 'tasks'}")
            if name not in known[section]:
                raise ConfigProblem(f"reporting.published.{section}.{key}: {name!r} is not in {path} (has "
                                    f"{', '.join(sorted(str(n) for n in known[section]))})")


def check_config_references(config: Mapping[str, Any], base_dir: str | Path | None = None) -> None:
    """Cross-key checks the JSON schema cannot express (run at workflow parse time, before any job);
    ``base_dir`` (the repository) is where a relative published-numbers file is looked up (not checked without)."""
    ablation = config.get("ablation", {})
    for key, known in (("models", config["models"]), ("tasks", config["tasks"])):
        for name in ablation.get(key, []):
            if name not in known:
                raise ConfigProblem(f"ablation.{key}: unknown {key[:-1]} '{name}' (known: {', '.join(known)})")
    clash = set(ablation.get("methods", {})) & set(config["methods"])
    if clash:
        raise ConfigProblem(f"ablation.methods: {sorted(clash)} already defined in methods")
    if "base" in config["methods"] or "base" in ablation.get("methods", {}):
        raise ConfigProblem("methods: 'base' is reserved for the untrained model")
    check_method_roles(config)
    if base_dir is not None:
        check_published_names(config, base_dir)
    for model, spec in config["models"].items():
        if "base_model" in spec and spec["kind"] == "hf":
            raise ConfigProblem(f"models.{model}.base_model: kind 'hf' models have no base_model step")
        base = base_model_settings(config, model)
        where = f"models.{model}.base_model" if "base_model" in spec else "base_model"
        shipped = shipped_bases_dir(base, base_dir) if base_dir is not None else None
        if shipped is not None and not shipped.is_dir():
            raise ConfigProblem(f"{where}.shipped_dir: {shipped} is not a directory (null builds the base)")
        phases = base.get("copy_drill_steps", 0) + base.get("teacher_first_steps", 0)
        if base.get("warm_start_steps") and phases > base["warm_start_steps"]:
            raise ConfigProblem(f"{where}: copy_drill_steps + teacher_first_steps ({phases}) exceed "
                                f"warm_start_steps ({base['warm_start_steps']})")
    evaluation_backend = config.get("evaluation", {}).get("backend", "hf")
    if config.get("group_jobs") == "model_task" and evaluation_backend != "hf":
        raise ConfigProblem(f"group_jobs: model_task needs evaluation.backend hf (one vLLM engine per checkpoint), "
                            f"got {evaluation_backend}")
    for key in config.get("train", {}):
        if key in PER_RUN_TRAIN_KEYS:
            raise ConfigProblem(f"train.{key}: set per run by the workflow; remove it from the config")
    for name, spec in config["tasks"].items():
        if spec["kind"] in ("science", "tooluse") and spec.get("source", "reference") == "local":
            for key in ("train_file", "test_file"):
                if not spec.get(key):
                    raise ConfigProblem(f"tasks.{name}.{key}: required when source is 'local'")
        if "scorer" in spec and spec["kind"] not in TOOLUSE_KINDS:
            raise ConfigProblem(f"tasks.{name}.scorer: applies to tool-use tasks only (kind {spec['kind']})")
        if spec["kind"] == "science" and spec.get("source", "reference") == "reference" and not spec.get("domain"):
            raise ConfigProblem(f"tasks.{name}.domain: required for the reference science splits")
    if config.get("backend", "local") == "local":
        for name, spec in config["models"].items():
            if spec["kind"] == "hf":
                raise ConfigProblem(f"models.{name}: kind 'hf' needs backend 'verl' (the local backend trains "
                                    "tiny or pretrained models)")
    # the trainer validates its own keys too: fail here, before any job, naming the key
    if config.get("backend", "local") == "local":
        from scsdpo_verl.local.config import ConfigError, load_config

        try:
            load_config(None, [f"{k}={v}" for k, v in config.get("train", {}).items()])
        except ConfigError as err:
            raise ConfigProblem(f"train: {err}") from None


def grid_runs(config: Mapping[str, Any]) -> list[tuple[str, str, str, int]]:
    """All (model, task, method, seed) training runs: the full grid plus the ablation subset."""
    runs = [
        (model, task, method, seed)
        for model in config["models"]
        for task in config["tasks"]
        for method in config["methods"]
        for seed in config["seeds"]
    ]
    ablation = config.get("ablation", {})
    runs += [
        (model, task, method, seed)
        for model in ablation.get("models", [])
        for task in ablation.get("tasks", [])
        for method in ablation.get("methods", {})
        for seed in config["seeds"]
    ]
    return runs


def write_task_data(
    task_spec: Mapping[str, Any],
    train_out: str | Path,
    test_out: str | Path,
    *,
    reference_dir: str | Path | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Write a task's train/test splits as verl RL parquet files; returns the row counts per split.

    Tool-use rows carry the task's ``scorer`` in ``extra_info`` (every backend's reward and the evaluation read
    it there); for them the counts also hold the scorer and ``gold_disagreements``: the test items whose gold
    answer the strict and the reference scorer score differently (their number and question ids).
    """
    from scsdpo_verl.tasks import load_task_rows
    from scsdpo_verl.tasks.schema import write_parquet
    from scsdpo_verl.tasks.synthetic import generate

    kind = task_spec["kind"]
    if kind in SYNTHETIC_KINDS:
        train = generate(kind, task_spec.get("train_size", 2048), seed, split="train")
        test = generate(kind, task_spec.get("test_size", 64), seed, split="test")
    else:
        kwargs: dict[str, Any] = {}
        if kind == "science" and task_spec.get("domain"):
            kwargs["domains"] = [task_spec["domain"]]
        if task_spec.get("source", "reference") == "reference":
            if reference_dir is None:
                raise ConfigProblem(f"task kind '{kind}' with source 'reference' needs the reference splits")
            # check_counts: a split whose row count differs from the reference's pinned one fails loudly
            train = load_task_rows(kind, reference_dir, split="train", format="sdpo", check_counts=True, **kwargs)
            test = load_task_rows(kind, reference_dir, split="test", format="sdpo", check_counts=True, **kwargs)
        else:
            train = load_task_rows(kind, task_spec["train_file"], split="train", **kwargs)
            test = load_task_rows(kind, task_spec["test_file"], split="test", **kwargs)
    counts: dict[str, Any] = {"train": len(train), "test": len(test)}
    if kind in TOOLUSE_KINDS:
        from scsdpo_verl.tasks.tooluse import gold_disagreements

        scorer = task_spec.get("scorer", "strict")
        for row in (*train, *test):
            row["extra_info"] = {**row["extra_info"], "scorer": scorer}  # read by compute_score, every backend
        ids = gold_disagreements(test)
        counts.update(scorer=scorer, gold_disagreements={"test": len(ids), "question_ids": ids})
    write_parquet(train, train_out)
    write_parquet(test, test_out)
    return counts


def experiment_name(model: str, task: str, method: str, seed: int) -> str:
    """A run's experiment name for the trackers (W&B run name, MLflow run): <model>-<task>-<method>-seed<seed>."""
    return "-".join(part for part in (model, task, method, f"seed{seed}") if part)


def tracking_settings(config: Mapping[str, Any], experiment: str) -> dict[str, Any]:
    """The trainer's tracking keys from the config's ``tracking`` section (verl's trainer.logger and names)."""
    tracking = config.get("tracking", {})
    return {"logger": list(tracking.get("logger", ["console", "tensorboard"])),
            "project_name": tracking.get("project_name", "scsdpo"), "experiment_name": experiment}


def verl_tracking_overrides(config: Mapping[str, Any], experiment: str) -> list[str]:
    """verl Hydra overrides for the same tracking: ``trainer.logger`` (plus ``file``, which the workflow's
    metrics.jsonl is merged from), ``trainer.project_name`` and ``trainer.experiment_name``."""
    settings = tracking_settings(config, experiment)
    loggers = [*settings["logger"], *(["file"] if "file" not in settings["logger"] else [])]
    return [f"trainer.logger=[{','.join(loggers)}]", f"trainer.project_name={settings['project_name']}",
            f"trainer.experiment_name={settings['experiment_name']}"]


def effective_train_config(
    config: Mapping[str, Any],
    *,
    model_path: str,
    task: str,
    method: str,
    seed: int,
    run_dir: str,
    train_path: str,
    val_path: str,
    threads: int,
    model: str = "",
) -> dict[str, Any]:
    """The full trainer config of one run: schema-level train settings + this run's method and paths, and the
    tracking section's logger (``model`` is the config's model key, for the experiment name)."""
    from scsdpo_verl.local.config import load_config

    methods = {**config["methods"], **config.get("ablation", {}).get("methods", {})}
    spec = methods[method]
    values: dict[str, Any] = dict(config.get("train", {}))
    values.update(
        run_dir=run_dir,
        seed=int(seed),
        model_path=model_path,
        task=config["tasks"][task]["kind"],
        method=spec["algorithm"],
        threads=int(threads),
        train_path=train_path,
        val_path=val_path,
        **tracking_settings(config, experiment_name(model, task, method, seed)),
    )
    for key in ("exponent", "normalize"):
        if key in spec:
            values[key] = spec[key]
    if spec["algorithm"] == "sdpo":
        values["exponent"] = 0.0
    return load_config(None, [f"{k}={v}" for k, v in values.items()]).to_dict()


# Snakemake's benchmark file columns (what ``benchmark:`` writes; the cost table reads s, cpu_time and max_rss)
BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load",
                     "cpu_time")


def write_benchmark(path: str | Path, *, wall_s: float, cpu_s: float, max_rss_mb: float) -> None:
    """One measurement in Snakemake's benchmark TSV layout (columns it measures and we do not are NA)."""
    hours, rest = divmod(int(wall_s), 3600)
    values = {"s": f"{wall_s:.2f}", "h:m:s": f"{hours}:{rest // 60:02d}:{rest % 60:02d}",
              "max_rss": f"{max_rss_mb:.2f}", "cpu_time": f"{cpu_s:.2f}"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(BENCHMARK_COLUMNS) + "\n" + "\t".join(values.get(c, "NA") for c in BENCHMARK_COLUMNS)
                    + "\n")


@contextmanager
def benchmarked(path: str | Path) -> Iterator[None]:
    """Measure the block as Snakemake's ``benchmark:`` measures a job: its wall and CPU seconds and the process's
    peak resident memory, written to ``path`` when the block ends (not after an exception). For jobs that run
    several runs in one process (``group_jobs: model_task``): each run gets its own file, its own seconds (the
    imports, paid once, are in the group's benchmark only) and the peak memory so far."""
    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    wall, cpu = time.perf_counter(), cpu_seconds()
    yield
    write_benchmark(path, wall_s=time.perf_counter() - wall, cpu_s=cpu_seconds() - cpu,
                    max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB


def prepare_run_dir(run_dir: str | Path, effective: Mapping[str, Any]) -> bool:
    """Make ``run_dir`` ready for a run with config ``effective``; returns whether to resume.

    The trainer records its config in ``run_dir/config.yaml``. An interrupted run of the same config resumes
    from its last checkpoint; a run dir holding a *different* config (or unrecorded files) is moved aside to
    ``<run_dir>.stale-<time>``: never silently reused, never deleted.
    """
    import yaml

    run_dir = Path(run_dir)
    recorded = run_dir / "config.yaml"
    ignore = ("resume", "progress_bar", *TRACKING_TRAIN_KEYS)  # where metrics go is not what the run computes
    if recorded.exists():
        previous = {k: v for k, v in (yaml.safe_load(recorded.read_text()) or {}).items() if k not in ignore}
        current = {k: v for k, v in effective.items() if k not in ignore}
        if previous == current:
            return (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    if run_dir.exists() and any(run_dir.iterdir()):
        stale = run_dir.with_name(f"{run_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), stale)
    run_dir.mkdir(parents=True, exist_ok=True)
    return False


def export_final(run_dir: str | Path, summary: Mapping[str, Any], final_dir: str | Path) -> Path:
    """Copy the last checkpoint's policy (a standard HF directory) to ``final_dir`` for evaluation."""
    source = Path(summary["final_checkpoint"]) / "policy"
    if not source.is_dir():
        raise FileNotFoundError(f"{run_dir}: no policy in the final checkpoint {source}")
    final_dir = Path(final_dir)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp.rename(final_dir)
    return final_dir


def obtain_reference_splits(
    out_dir: str | Path,
    *,
    local_dir: str | Path | None = None,
    commit: str | None = None,
    download=None,
) -> list[Path]:
    """Put the SDPO reference's pinned split files under ``out_dir`` (same relative paths), each verified.

    From ``local_dir`` (a clone of the reference repository) when given, else downloaded from the repository at
    the pinned commit (needs network). Every file is checked against its pinned SHA-256 (or git blob id); a
    missing file or a mismatch raises ``ReferenceDataError`` naming the file, and nothing partial is left in
    ``out_dir``. ``download(url, dest)`` is injectable for tests (default: urllib).
    """
    from scsdpo_verl.tasks.reference import RAW_URL, REFERENCE_COMMIT, REFERENCE_FILES, verify_file

    if commit and not REFERENCE_COMMIT.startswith(commit):
        raise ConfigProblem(f"reference_data.commit: the pinned hashes are for {REFERENCE_COMMIT[:12]}, got {commit}")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if download is None:
        import urllib.request

        def download(url: str, dest: Path) -> None:
            with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
                shutil.copyfileobj(response, f)

    written = []
    for rel_path, pins in REFERENCE_FILES.items():
        dest = tmp / rel_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if local_dir is not None:
            source = Path(local_dir) / rel_path
            if not source.is_file():
                from scsdpo_verl.tasks.reference import ReferenceDataError

                raise ReferenceDataError(f"{source}: reference file is missing from the clone at {local_dir}")
            shutil.copyfile(source, dest)
        else:
            download(RAW_URL.format(path=rel_path), dest)
        verify_file(dest, sha256=pins.get("sha256"), git_blob=pins.get("git_blob_sha1"))
        written.append(out_dir / rel_path)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return written


# ----------------------------------------------------------------------------------------------------------
# the verl backend's run directory (workflow/scripts/ray_slurm.sh calls finish-verl-run after training)
# ----------------------------------------------------------------------------------------------------------
VERL_METRICS_GLOB = "verl_metrics.*.jsonl"  # one file per launch (verl's file logger truncates on open)


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("global_step_"))


def merge_verl_metrics(run_dir: str | Path, last_step: int | None = None) -> list[dict[str, Any]]:
    """verl's per-launch metric files -> flat records ``{"step": s, <metric>: value}`` sorted by step.

    Launches are read in the order they started (the file names carry the start time); a step logged again by
    a later launch (redone after a resume) keeps the later record; steps after ``last_step`` (logged after the
    last checkpoint by a launch that then died, never redone) are dropped.
    """
    import json

    by_step: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(run_dir).glob(VERL_METRICS_GLOB)):
        for line_number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, data = int(record["step"]), dict(record["data"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {line_number}: not a verl file-logger record ({err})") from None
            by_step[step] = {"step": step, **data}
    return [by_step[s] for s in sorted(by_step) if last_step is None or s <= last_step]


def add_cumulative_step_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``timing_s/step_cumulative`` to step-sorted records: the running sum of verl's ``timing_s/step`` (a
    record without one, e.g. the validation before training at step 0, adds nothing), as the local trainer logs
    it. The papers' time budgets are read on this axis."""
    running = 0.0
    for record in records:
        running += float(record.get("timing_s/step", 0.0))
        record["timing_s/step_cumulative"] = running
    return records


def verl_run_config(verl_config: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis keys of a verl run (the local trainer's names) from the launcher's resolved config."""
    actor = verl_config["actor_rollout_ref"]["actor"]
    policy_loss = actor.get("policy_loss", {}) or {}
    mode = policy_loss.get("loss_mode", "vanilla")
    method = mode if mode in ("sdpo", "sc_sdpo") else "grpo"
    record: dict[str, Any] = {
        "backend": "verl",
        "method": method,
        "rollouts_per_question": verl_config["actor_rollout_ref"]["rollout"]["n"],
        "questions_per_step": verl_config["data"]["train_batch_size"],
        "total_steps": verl_config["trainer"].get("total_training_steps"),
        "lr": actor["optim"]["lr"],
        "loss_agg_mode": actor.get("loss_agg_mode"),
        "seed": verl_config["data"].get("seed"),
        "norm_adv_by_std": verl_config["algorithm"].get("norm_adv_by_std_in_grpo"),
    }
    if method != "grpo":
        record.update(exponent=policy_loss.get("sc_exponent", 0.5) if method == "sc_sdpo" else 0.0,
                      normalize=policy_loss.get("sc_normalize", "batch_mean"),
                      teacher_signal=policy_loss.get("teacher_signal"), alpha=policy_loss.get("alpha"),
                      topk=policy_loss.get("topk"), add_tail=policy_loss.get("add_tail"),
                      ema_rate=policy_loss.get("teacher_update_rate"))
    return record


def finish_verl_run(run_dir: str | Path, final_dir: str | Path, summary_path: str | Path,
                    merge_command: list[str] | None = None) -> dict[str, Any]:
    """After a verl run: its last checkpoint's actor as an HF directory (verl's model merger) in ``final_dir``,
    ``metrics.jsonl`` and ``config.yaml`` in the local trainer's layout (what the analysis reads), and
    ``summary.json``. Raises naming the run directory when the run left no checkpoint."""
    import json
    import subprocess
    import sys

    import yaml

    run_dir = Path(run_dir)
    checkpoints = sorted(run_dir.glob("global_step_*"), key=checkpoint_step)
    if not checkpoints:
        raise FileNotFoundError(f"{run_dir}: no global_step_* checkpoint; the last step must be saved "
                                "(trainer.save_freq > 0 saves it)")
    latest = checkpoints[-1]
    final_dir = Path(final_dir)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    command = merge_command or [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp"]
    subprocess.run([*command, "--local_dir", str(latest / "actor"), "--target_dir", str(tmp)], check=True)
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp.rename(final_dir)

    records = add_cumulative_step_time(merge_verl_metrics(run_dir, last_step=checkpoint_step(latest)))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    verl_config_path = run_dir / "verl_config.yaml"
    if verl_config_path.is_file():
        config = verl_run_config(yaml.safe_load(verl_config_path.read_text()))
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = {"run_dir": str(run_dir), "backend": "verl", "steps": checkpoint_step(latest),
               "final": records[-1] if records else {}, "final_checkpoint": str(latest), "finished_at": time.time()}
    Path(summary_path).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m scsdpo_verl.pipeline finish-verl-run RUN_DIR FINAL_DIR SUMMARY_JSON`` (used by ray_slurm.sh),
    ``publish-results`` (a reference run to docs/results), ``ship-bases`` (built bases to bases/) and
    ``gains-so-far`` (the gain table of a run still in progress)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scsdpo_verl.pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    finish = commands.add_parser("finish-verl-run", help=finish_verl_run.__doc__.split("\n")[0])
    finish.add_argument("run_dir")
    finish.add_argument("final_dir")
    finish.add_argument("summary")
    publish = commands.add_parser("publish-results", help="copy a finished run's tables, figures and base reports "
                                  "to docs/results/<config> as the expected results (analysis.expected)")
    publish.add_argument("dest", help="e.g. docs/results/default")
    publish.add_argument("--command", dest="run_command", required=True,
                         help="the command that made the run, for the manifest")
    publish.add_argument("--wall-seconds", type=float, default=None, help="the run's measured wall time")
    publish.add_argument("--results", default="results")
    publish.add_argument("--figures", default="figures")
    publish.add_argument("--commit", default="HEAD",
                         help="the commit the run was made at (default: HEAD of the current checkout)")
    ship = commands.add_parser("ship-bases", help="copy base checkpoints the workflow built with this checkout's "
                               "warm-start code to the shipped bases (scsdpo_verl.local.shipped_bases)")
    ship.add_argument("models", nargs="+", help="model names, e.g. qwen3-tiny olmo3-tiny")
    ship.add_argument("--results", default="results", help="the run's results directory (models/<name>/base)")
    ship.add_argument("--to", default="bases", help="the shipped bases' directory (base_model.shipped_dir)")
    so_far = commands.add_parser("gains-so-far", help="the gain table over the evaluations a run (e.g. the CPU study) "
                                 "has finished so far, before its tables job")
    so_far.add_argument("--configfile", default=str(Path(__file__).resolve().parents[1] / "config" / "default.yaml"),
                        help="the run's config file, as given to snakemake (default: config/default.yaml)")
    so_far.add_argument("--results", default="results", help="the run's results directory")
    args = parser.parse_args(argv)
    if args.command == "gains-so-far":
        from scsdpo_verl.analysis.make import gains_so_far

        print(gains_so_far(load_workflow_config(args.configfile), args.results))
    elif args.command == "finish-verl-run":
        finish_verl_run(args.run_dir, args.final_dir, args.summary)
    elif args.command == "ship-bases":
        from scsdpo_verl.local.shipped_bases import ship_base

        for model in args.models:
            target = ship_base(Path(args.results) / "models" / model / "base", args.to, model)
            print(f"{model}: {target}")
    else:
        from scsdpo_verl.analysis.expected import publish_reference, this_machine

        resolved = subprocess.run(["git", "rev-parse", "--verify", f"{args.commit}^{{commit}}"], capture_output=True,
                                  text=True)
        if resolved.returncode != 0:
            raise SystemExit(f"publish-results --commit: {args.commit!r} is not a commit of this checkout")
        commit = resolved.stdout.strip()
        machine = this_machine()
        manifest = publish_reference(args.results, args.figures, args.dest, command=args.run_command, commit=commit,
                                     wall_seconds=args.wall_seconds, machine_fields=machine,
                                     machine=f"{machine['cores']} cores, {machine['cpu']}")
        print(f"{len(manifest['files'])} files to {args.dest} (commit {commit[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
