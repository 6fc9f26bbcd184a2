"""The smoke config end to end in a temporary directory: data -> base model -> 7 training runs -> lm-eval ->
tables, the 8 figures and the HTML report; then the rerun behaviour users rely on."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scsdpo_verl.pipeline import FIGURE_NAMES, TABLE_NAMES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _snakemake(workdir, *args, configfile=REPO / "config/smoke.yaml", check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(workdir), "--configfile", str(configfile)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_run(smoke_local_run):
    """The smoke DAG, run once per session (tests/conftest.py) and shared with the SLURM comparison."""
    workdir, _ = smoke_local_run
    return workdir


def test_all_tables_figures_and_report(smoke_run):
    tables = smoke_run / "results" / "tables"
    for name in TABLE_NAMES:
        for ext in ("csv", "md", "tex"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    for name in FIGURE_NAMES:
        assert (smoke_run / "figures" / f"{name}.png").stat().st_size > 1000
        assert (smoke_run / "figures" / f"{name}.pdf").stat().st_size > 1000
    main = pd.read_csv(tables / "main_table.csv")
    assert {"base", "grpo", "sdpo", "sc_sdpo"} <= set(main["method"])
    # the report goes outside results/ so the shared run's outputs stay comparable with the SLURM run's
    report = smoke_run.parent / f"{smoke_run.name}-report.html"
    _snakemake(smoke_run, "--report", str(report))
    html = report.read_text(errors="replace")
    assert "fig1_learnability" in html and "main_table" in html
    assert "Docutils System Messages" not in html


def test_console_shows_progress_not_empty_shell_commands(smoke_local_run):
    _, run = smoke_local_run
    assert "Shell command" not in run.log  # script rules have none: printing "None" per job was noise
    # 13 jobs: the smoke config trains and evaluates in one process per model x task (group_jobs)
    assert "13 of 13 steps (100%) done" in run.log and "log: results/logs/train/" in run.log


def test_run_dirs_are_self_describing(smoke_run):
    run = smoke_run / "results" / "runs" / "qwen3-tiny" / "synthetic_science" / "sc_sdpo" / "seed0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"] == "sc_sdpo" and config["exponent"] == 0.5 and config["train_path"].endswith(".parquet")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(0, config["total_steps"] + 1))
    assert (run / "final" / "config.json").is_file()
    results = json.loads(
        (smoke_run / "results/eval/qwen3-tiny/synthetic_science/sc_sdpo/seed0/results.json").read_text()
    )
    assert results  # lm-eval ran on the final checkpoint


def test_training_and_evaluation_logs_say_the_budget_cuts_worked_solutions(smoke_run):
    # smoke.yaml's 24 tokens are shorter than the long science solutions: both jobs must say so in their logs
    logs = smoke_run / "results/logs"
    train_log = (logs / "train/qwen3-tiny/synthetic_science/sc_sdpo_exp1/seed0.log").read_text()
    assert "WARNING max_new_tokens = 24 tokens is shorter than" in train_log
    assert "WARNING max_gen_toks = 24 tokens is shorter than" in (logs / "evaluate_group/qwen3-tiny/"
                                                                 "synthetic_science.log").read_text()


def test_the_models_own_base_model_settings_reach_its_base_job(smoke_run):
    # smoke.yaml: qwen3-tiny's own {number_tokens: true} over the top-level section (20 steps, 5 drills)
    report = json.loads((smoke_run / "results/models/qwen3-tiny/base_report.json").read_text())
    assert report["number_tokens"] is True and report["vocab"] > 1020  # the digit tokenizer's vocabulary: 1020
    assert report["sft_steps"] == 20 and report["copy_drill_steps"] == 5


def test_a_grouped_run_is_the_run_alone(smoke_run, tmp_path):
    # group_jobs: model_task trained qwen3-tiny/synthetic_tooluse's runs in one process, sc_sdpo last: trained alone
    # in a fresh process from its recorded config, it must log the same numbers (only clock times may differ)
    run = smoke_run / "results/runs/qwen3-tiny/synthetic_tooluse/sc_sdpo/seed0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    alone = tmp_path / "alone"
    config.update(run_dir=str(alone), resume=False, progress_bar=False, logger=[])
    for key in ("model_path", "train_path", "val_path"):
        config[key] = str(smoke_run / config[key])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "scsdpo_verl.local.train", "--config", str(tmp_path / "config.yaml")],
                   cwd=tmp_path, check=True, capture_output=True, timeout=600)

    def numbers(path):
        return [{k: v for k, v in json.loads(line).items() if "timing" not in k}
                for line in path.read_text().splitlines()]

    grouped = numbers(run / "metrics.jsonl")
    assert len(grouped) == config["total_steps"] + 1 and grouped == numbers(alone / "metrics.jsonl")


def test_rerun_is_a_no_op_and_a_changed_config_reruns_training(smoke_run, tmp_path):
    proc = _snakemake(smoke_run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    changed = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    changed["train"]["lr"] = 2.0e-4
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    out = _snakemake(smoke_run, "-n", configfile=path).stdout
    counts = dict(
        (line.split()[0], int(line.split()[1])) for line in out[out.index("Job stats"):].splitlines()[3:]
        if len(line.split()) == 2 and line.split()[1].isdigit()
    )
    # every run's effective config changed, none is silently reused: both groups (6 runs) and the ablation's run
    assert (counts["train_group"], counts["train"]) == (2, 1)
    assert "params" in out.lower()


# ------------------------------------------------------------------------------------------------------------------
# issue 17: validation and step time, TensorBoard, budget columns, published numbers, costs, tool-use scoring.
# Each value is recomputed here from the files the runs left (metrics.jsonl, event files, benchmark TSVs, samples).
# ------------------------------------------------------------------------------------------------------------------
RUNS = [(task, method) for task in ("synthetic_science", "synthetic_tooluse") for method in ("grpo", "sdpo", "sc_sdpo")]
RUNS.append(("synthetic_science", "sc_sdpo_exp1"))


def run_log(smoke_run, task, method) -> list[dict]:
    path = smoke_run / "results/runs/qwen3-tiny" / task / method / "seed0/metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def val_mean(record: dict, task: str) -> float:
    return record[f"val-core/{task}/acc/mean@4"]


@pytest.mark.parametrize(("task", "method"), RUNS)
def test_validation_before_training_and_cumulative_step_time(smoke_run, task, method):
    log = run_log(smoke_run, task, method)
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert all(f"val-core/{task}/acc/mean@4" in r for r in log)  # before step 1 and after each (val_every: 1)
    running = [0.0]
    for record in log[1:]:
        running.append(running[-1] + record["timing_s/step"])
    assert [r["timing_s/step_cumulative"] for r in log] == pytest.approx(running)


def test_tensorboard_event_files_hold_the_logged_metrics(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = smoke_run / "results/runs/qwen3-tiny/synthetic_tooluse/sc_sdpo/seed0"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    log = run_log(smoke_run, "synthetic_tooluse", "sc_sdpo")
    for record in log:
        for name, value in record.items():
            if name != "step":
                assert scalars[name][record["step"]] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    # verl's console backend wrote each step's line into the job's log, not onto the terminal
    job_log = (smoke_run / "results/logs/train/qwen3-tiny/synthetic_tooluse/sc_sdpo/seed0.log").read_text()
    assert "step:3 - " in job_log and "Saving tensorboard log to" in job_log
    for task, method in RUNS:
        assert list((smoke_run / "results/runs/qwen3-tiny" / task / method / "seed0/tensorboard").glob("events.*"))


def test_budget_columns_are_the_best_validation_within_the_budget(smoke_run):
    main = pd.read_csv(smoke_run / "results/tables/main_table.csv")
    for task, method in RUNS[:-1]:  # the main grid
        log = run_log(smoke_run, task, method)
        for budget, steps in (("1 step", 1), ("3 steps", 3)):
            cell = main[(main["method"] == method) & (main["benchmark"] == task)
                        & (main["metric"] == f"best mean@4 ≤ {budget}")]
            assert len(cell) == 1, (task, method, budget)
            expected = max(val_mean(r, task) for r in log if r["step"] <= steps)
            assert cell["mean"].iloc[0] == pytest.approx(expected)
            assert cell["n_seeds"].iloc[0] == 1 and not cell["budget_not_reached"].iloc[0]
    assert main[(main["method"] == "base") & main["metric"].str.startswith("best")].empty
    header = (smoke_run / "results/tables/main_table.md").read_text().splitlines()[2]
    assert ("synthetic_science final mean@4 | synthetic_science final maj@4 | synthetic_science best mean@4 ≤ 1 step "
            "| synthetic_science best mean@4 ≤ 3 steps |") in header
    ablation = pd.read_csv(smoke_run / "results/tables/ablation_table.csv")
    exp1 = ablation[(ablation["exponent"] == 1.0) & (ablation["metric"] == "best mean@4 ≤ 3 steps")]
    assert exp1["mean"].iloc[0] == pytest.approx(max(val_mean(r, "synthetic_science")
                                                     for r in run_log(smoke_run, "synthetic_science", "sc_sdpo_exp1")))


def test_published_numbers_beside_this_run(smoke_run):
    """config/smoke.yaml maps qwen3-tiny onto Qwen3-8B and the two tasks onto Chemistry and Tool use: the base
    model's published Chemistry number (41.2, the SDPO paper) beside this run's final mean@4, the SC-SDPO
    abstract's gains (+3.2 mean@16, +4.3 maj@16) beside this run's Δ average; the 1 h / 5 h numbers are listed
    but not compared (the smoke reports step budgets)."""
    tables = smoke_run / "results/tables"
    main, comparison = pd.read_csv(tables / "main_table.csv"), pd.read_csv(tables / "paper_comparison.csv")
    ours = main[(main["method"] == "base") & (main["benchmark"] == "synthetic_science") & (main["metric"] == "mean@4")]
    base = comparison[(comparison["algorithm"] == "base") & (comparison["published_benchmark"] == "Chemistry")
                      & (comparison["source"] == "sdpo_paper")].iloc[0]
    assert base["paper"] == pytest.approx(0.412) and base["compared_with"] == "mean@4"
    assert base["this_run"] == pytest.approx(ours["mean"].iloc[0])
    assert base["difference"] == pytest.approx(ours["mean"].iloc[0] - 0.412)
    paper_row = main[(main["method"] == "paper_base") & (main["benchmark"] == "synthetic_science")]
    assert paper_row["mean"].iloc[0] == pytest.approx(0.412) and paper_row["metric"].iloc[0] == "mean@4"
    delta = main[(main["method"] == "delta_sc_sdpo_minus_sdpo") & (main["benchmark"] == "average")].set_index("metric")
    gains = comparison[comparison["algorithm"] == "delta_sc_sdpo_minus_sdpo"].set_index("compared_with")
    assert gains.loc["mean@4", "paper"] == pytest.approx(0.032) and gains.loc["maj@4_bootstrap", "paper"] == \
        pytest.approx(0.043)
    for metric in ("mean@4", "maj@4_bootstrap"):
        assert gains.loc[metric, "difference"] == pytest.approx(delta.loc[metric, "mean"] - gains.loc[metric, "paper"])
    timed = comparison[comparison["budget"].isin(["1 h", "5 h"])]
    assert len(timed) > 0 and timed["compared_with"].isna().all() and timed["this_run"].isna().all()
    markdown = (tables / "main_table.md").read_text()
    assert "| qwen3-tiny | SC-SDPO (paper†) |" not in markdown  # DRIFT's SC-SDPO numbers are 5 h: not compared
    assert "| qwen3-tiny | Base (paper) | – | 41.2 |" in markdown and "† secondary: drift_readme" in markdown
    assert (smoke_run / "figures/fig9_paper_vs_this_run.png").stat().st_size > 1000


def _bench(path) -> dict:
    lines = path.read_text().splitlines()
    # h:m:s is read as 0; NA (a column evaluate_in_turn does not measure) as nan
    values = [0.0 if ":" in v else math.nan if v == "NA" else float(v) for v in lines[1].split("\t")]
    return dict(zip(lines[0].split("\t"), values, strict=True))


def test_every_job_wrote_a_benchmark_and_the_cost_table_reads_them(smoke_run):
    benchmarks = smoke_run / "results/benchmarks"
    assert len(list((benchmarks / "train").rglob("*.tsv"))) == 7
    assert len(list((benchmarks / "evaluate").rglob("*.tsv"))) == 9
    # the smoke config trains and evaluates in one process per model x task (group_jobs): a benchmark per group
    for group in ("train_group", "evaluate_group"):
        assert sorted(p.name for p in (benchmarks / group / "qwen3-tiny").iterdir()) == [
            "synthetic_science.tsv", "synthetic_tooluse.tsv"]
    for name in ("task_data/synthetic_science", "task_data/synthetic_tooluse", "base_model/qwen3-tiny", "tables",
                 "figures"):
        assert (benchmarks / f"{name}.tsv").is_file(), name
    cost = pd.read_csv(smoke_run / "results/tables/cost_table.csv").set_index("method")
    totals = {}
    for method in ("grpo", "sdpo", "sc_sdpo"):
        train = [_bench(benchmarks / "train/qwen3-tiny" / task / method / "seed0.tsv")
                 for task in ("synthetic_science", "synthetic_tooluse")]
        evals = [_bench(benchmarks / "evaluate/qwen3-tiny" / task / method / "seed0.tsv")
                 for task in ("synthetic_science", "synthetic_tooluse")]
        totals[method] = (sum(b["s"] for b in train), sum(b["cpu_time"] for b in train),
                          max(b["max_rss"] for b in train))
        row = cost.loc[method]
        assert row["runs"] == 2
        assert row["wall_hours"] == pytest.approx(totals[method][0] / 3600, rel=1e-6)
        assert row["cpu_hours"] == pytest.approx(totals[method][1] / 3600, rel=1e-6)
        assert row["max_rss_mb"] == pytest.approx(totals[method][2]) and row["max_rss_mb"] > 100
        assert row["eval_wall_hours"] == pytest.approx(sum(b["s"] for b in evals) / 3600, rel=1e-6)
    for top, bottom in (("sdpo", "grpo"), ("sc_sdpo", "sdpo")):
        ratio = cost.loc[f"ratio_{top}_over_{bottom}"]
        assert ratio["wall_hours"] == pytest.approx(totals[top][0] / totals[bottom][0], rel=1e-6)
        assert ratio["cpu_hours"] == pytest.approx(totals[top][1] / totals[bottom][1], rel=1e-6)
        assert ratio["max_rss_mb"] == pytest.approx(totals[top][2] / totals[bottom][2], rel=1e-6)


def test_tool_use_is_scored_with_the_configured_scorer(smoke_run):
    """config/smoke.yaml scores synthetic_tooluse with the reference's parser: the rows carry it to training,
    validation and lm-eval; the scorer table re-scores every logged response with both."""
    from scsdpo_verl.tasks.schema import read_parquet
    from scsdpo_verl.tasks.tooluse import score_tooluse, score_tooluse_reference

    data = smoke_run / "results/data/synthetic_tooluse"
    counts = json.loads((data / "counts.json").read_text())
    assert counts["scorer"] == "reference" and counts["gold_disagreements"] == {"test": 0, "question_ids": []}
    assert {row["extra_info"]["scorer"] for row in read_parquet(data / "train.parquet")} == {"reference"}
    assert "scorer" not in read_parquet(smoke_run / "results/data/synthetic_science/test.parquet")[0]["extra_info"]
    scorers = pd.read_csv(smoke_run / "results/tables/tooluse_scorers.csv")
    assert len(scorers) == 4 and set(scorers["scorer"]) == {"reference"}  # base + 3 methods
    for _, row in scorers.iterrows():
        eval_dir = smoke_run / "results/eval/qwen3-tiny/synthetic_tooluse" / row["method"] / "seed0"
        records = [json.loads(line) for line in (eval_dir / "samples.jsonl").read_text().splitlines()]
        assert {r["scorer"] for r in records} == {"reference"}
        reference = [[score_tooluse_reference(x, r["ground_truth"])["score"] for x in r["responses"]] for r in records]
        strict = [[score_tooluse(x, r["ground_truth"])["score"] for x in r["responses"]] for r in records]
        assert [r["accs"] for r in records] == reference  # what the evaluation scored with
        results = json.loads((eval_dir / "results.json").read_text())["metrics"]
        assert results["mean@4"] == pytest.approx(sum(sum(a) / 4 for a in reference) / len(records))
        differ = sum(a != b for ra, rs in zip(reference, strict, strict=True) for a, b in zip(ra, rs, strict=True))
        assert (row["questions"], row["responses"], row["responses_disagree"]) == (4, 16, differ)
