# Config validation and the helpers every rule file uses. Validation happens here, at parse time, so a broken
# config fails before any job runs, with a message naming the key.
import os
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import validate

from scsdpo_verl.pipeline import (
    base_model_settings,
    check_config_references,
    experiment_name,
    grid_runs,
    load_schema,
    prepare_config,
    shipped_bases_dir,
    verl_tracking_overrides,
    ConfigProblem,
)


try:
    # --config values typed by the schema; a violation is one line naming the key (not the whole schema)
    prepare_config(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))
    validate(config, schema="../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
    check_config_references(config, base_dir=workflow.basedir)
except ConfigProblem as err:
    raise WorkflowError(f"invalid config: {err}") from None

RESULTS = "results"
FIGURES = "figures"
RUNS = grid_runs(config)  # list of (model, task, method, seed), main grid + ablation


wildcard_constraints:
    model=r"[\w.-]+",
    task=r"[\w.-]+",
    method=r"[\w.-]+",
    seed=r"\d+",


def run_dir(wildcards):
    return f"{RESULTS}/runs/{wildcards.model}/{wildcards.task}/{wildcards.method}/seed{wildcards.seed}"


def base_model_path(wildcards):
    """A tiny/pretrained model's base checkpoint is built by a rule; an hf model is used as named."""
    spec = config["models"][wildcards.model]
    if spec["kind"] == "hf":
        return spec["path"]
    return f"{RESULTS}/models/{wildcards.model}/base"


def shipped_base_dir_of(model):
    """The model's base_model.shipped_dir as a path (None: always build)."""
    found = shipped_bases_dir(base_model_settings(config, model), workflow.basedir)
    return None if found is None else str(found)


def shipped_recipe(wildcards):
    """The recipe of the model's shipped base, if there is one (an input: a newer shipped base reruns the rule)."""
    shipped = shipped_base_dir_of(wildcards.model)
    name = config["models"][wildcards.model].get("name", wildcards.model)
    recipe = Path(shipped, name, "recipe.json") if shipped else None
    return [str(recipe)] if recipe is not None and recipe.is_file() else []


def base_model_input(wildcards):
    spec = config["models"][wildcards.model]
    return [] if spec["kind"] == "hf" else [f"{RESULTS}/models/{wildcards.model}/base"]


def method_spec(name):
    return {**config["methods"], **config["ablation"]["methods"]}[name]


def evaluated_jobs():
    """(model, task, method, seed) of every evaluation: each trained run plus the base model once per model x task."""
    jobs = {(m, t, meth, s) for (m, t, meth, s) in RUNS}
    jobs |= {(m, t, "base", 0) for m in config["models"] for t in config["tasks"]}
    return sorted(jobs)


def evaluated_runs():
    """Every evaluation target (results.json of each evaluated_jobs entry)."""
    return [f"{RESULTS}/eval/{m}/{t}/{meth}/seed{s}/results.json" for (m, t, meth, s) in evaluated_jobs()]


def all_outputs():
    base_table = any(spec["kind"] != "hf" for spec in config["models"].values())  # rule base_table (models.smk)
    return [
        *expand(f"{RESULTS}/tables/{{name}}.csv", name=TABLE_NAMES),
        *expand(f"{FIGURES}/{{fig}}.png", fig=FIGURE_NAMES),
        *([f"{RESULTS}/tables/base_models.csv"] if base_table else []),
        *([f"{RESULTS}/tables/expected_comparison.csv"] if config.get("expected_results") else []),
    ]


def published_file():
    """The published numbers the tables and figure 9 compare with (reporting.published.file, relative to the repo)."""
    from scsdpo_verl.pipeline import published_numbers_file

    return str(published_numbers_file(config, workflow.basedir))


def reference_dir_input(wildcards):
    spec = config["tasks"][wildcards.task]
    if spec["kind"] in ("science", "tooluse") and spec.get("source", "reference") == "reference":
        return [f"{RESULTS}/data/reference"]
    return []


def train_config(wildcards, threads):
    from scsdpo_verl.pipeline import effective_train_config

    return effective_train_config(
        config,
        model_path=base_model_path(wildcards),
        task=wildcards.task,
        method=wildcards.method,
        seed=int(wildcards.seed),
        run_dir=run_dir(wildcards),
        train_path=f"{RESULTS}/data/{wildcards.task}/train.parquet",
        val_path=f"{RESULTS}/data/{wildcards.task}/test.parquet",
        threads=threads,
        model=wildcards.model,
    )


def launcher_python():
    """The verl launcher's interpreter: the job's conda env's python with --use-conda, else Snakemake's own."""
    import sys

    from snakemake.settings.types import DeploymentMethod

    return "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable


def verl_overrides(wildcards):
    """Hydra overrides of one verl run (method variant, seed, cluster shape, user extras), space-joined."""
    spec = method_spec(wildcards.method)
    overrides = [f"data.seed={wildcards.seed}"]
    policy_loss = "actor_rollout_ref.actor.policy_loss"
    if spec["algorithm"] == "sc_sdpo":
        overrides.append(f"{policy_loss}.sc_exponent={spec.get('exponent', 0.5)}")
        overrides.append(f"{policy_loss}.sc_normalize={spec.get('normalize', 'batch_mean')}")
    # the evaluation before the first step, as the local backend's (the budget columns count it); a user override wins
    overrides.append("trainer.val_before_train=true")
    # tracking as in the local backend (trainer.logger from the config's tracking section, + verl's file logger)
    overrides.extend(
        verl_tracking_overrides(
            config, experiment_name(wildcards.model, wildcards.task, wildcards.method, wildcards.seed)
        )
    )
    overrides.append(f"trainer.nnodes={config['verl']['nodes']}")
    overrides.append(f"trainer.n_gpus_per_node={config['verl']['gpus_per_node']}")
    overrides.extend(config["verl"]["overrides"])
    return " ".join(f"'{o}'" for o in overrides)


def results_dir_of(summary_path):
    """results/ from results/runs/{model}/{task}/{method}/seed{seed}/summary.json."""
    return str(Path(summary_path).parents[5])


# Job order when cores are few (Snakemake starts the ready jobs of highest priority first): every evaluation before
# any training, so a run is evaluated as soon as it is trained and the base at the start; training seed by seed in
# the config's order, so a run stopped half way (or read by `pipeline gains-so-far`) has every method of its first
# seeds, the pairs SC-SDPO - SDPO is computed over. Priorities stay >= 1: the ILP scheduler weighs them.
def train_priority(wildcards):
    """len(seeds) for the first seed down to 1 for the last (a seed outside the list: 1)."""
    seeds = [int(s) for s in config["seeds"]]
    seed = int(wildcards.seed)
    return len(seeds) - seeds.index(seed) if seed in seeds else 1


EVALUATE_PRIORITY = len(config["seeds"]) + 1


def eval_model_input(wildcards):
    if wildcards.method == "base":
        return base_model_input(wildcards)
    return [f"{run_dir(wildcards)}/final"]


def eval_model_path(wildcards):
    if wildcards.method == "base":
        return base_model_path(wildcards)
    return f"{run_dir(wildcards)}/final"


# group_jobs: model_task: the (method, seed) runs one train_group process trains per model x task, and what one
# evaluate_group process evaluates (the base model first)
GROUPED_RUNS = [(method, seed) for method in config["methods"] for seed in config["seeds"]]
GROUPED_EVALUATIONS = [("base", 0)] + GROUPED_RUNS


def grouped_wildcards(wildcards, pairs=GROUPED_EVALUATIONS):
    return [SimpleNamespace(model=wildcards.model, task=wildcards.task, method=method, seed=str(seed))
            for method, seed in pairs]


def grouped_runs(wildcards, threads):
    """What one train_group process needs per run: its effective config (a param: a change re-runs the group),
    final checkpoint dir, log and benchmark file, as rule train has them."""
    return [{"train_config": train_config(w, threads), "final": f"{run_dir(w)}/final",
             "log": f"{RESULTS}/logs/train/{w.model}/{w.task}/{w.method}/seed{w.seed}.log",
             "benchmark": f"{RESULTS}/benchmarks/train/{w.model}/{w.task}/{w.method}/seed{w.seed}.tsv"}
            for w in grouped_wildcards(wildcards, GROUPED_RUNS)]


def grouped_checkpoints(wildcards):
    """What evaluate_in_turn needs per checkpoint: model, output dir, sampling seed, benchmark file."""
    return [{"model_dir": eval_model_path(w), "out_dir": f"{RESULTS}/eval/{w.model}/{w.task}/{w.method}/seed{w.seed}",
             "seed": config["evaluation"]["seed"] + int(w.seed),
             "benchmark": f"{RESULTS}/benchmarks/evaluate/{w.model}/{w.task}/{w.method}/seed{w.seed}.tsv"}
            for w in grouped_wildcards(wildcards)]


# A shipped base that is not this config's recipe is built instead, which takes long (~20 min on 2 cores): say so
# on the console before any job runs, not only in the base job's log (a damaged shipped base fails here)
if workflow.is_main_process:
    import sys

    from scsdpo_verl.local.shipped_bases import ShippedBaseProblem, base_recipe, find_shipped_base

    for _model, _spec in config["models"].items():
        _shipped = shipped_base_dir_of(_model) if _spec["kind"] != "hf" else None
        if _shipped is None:
            continue
        try:
            _found, _why = find_shipped_base(
                _shipped, _spec["name"], base_recipe(_spec, base_model_settings(config, _model))
            )
        except ShippedBaseProblem as err:
            raise WorkflowError(f"base_model.shipped_dir: {err}") from None
        if _found is None:
            print(f"WARNING {_model}: {_why} (a warm start: ~20 min on 2 cores)", file=sys.stderr)
