"""The verl backend's DAG on CPU (config/smoke_verl.yaml): base model -> stock verl 0.9.1 through the plugin in
CPU mode (grpo, sdpo, sc_sdpo; 2 steps each, validation before and after every step) -> verl's model merger ->
lm-eval -> tables and figures. Checked on what the runs left, not only that the DAG finished (~5 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from scsdpo_verl.pipeline import FIGURE_NAMES
from tests.slurm.slurm_tools import DAG_TIMEOUT_S, REPO, console, run_snakemake

pytestmark = pytest.mark.slow
RUNS = "results/runs/qwen3-tiny/synthetic_science"


@pytest.fixture(scope="module")
def verl_dag(tmp_path_factory, request) -> Path:
    workdir = tmp_path_factory.mktemp("smoke_verl")
    run = run_snakemake(["--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config/smoke_verl.yaml"),
                         "--directory", str(workdir), "--cores", "2"],
                        log_path=workdir / "snakemake.log", timeout_s=DAG_TIMEOUT_S,
                        progress=console(request.config, "smoke DAG, verl backend on CPU"))
    if run.returncode != 0:
        pytest.fail(f"the verl smoke DAG failed (rc={run.returncode}):\n{run.log[-5000:]}", pytrace=False)
    return workdir


@pytest.mark.parametrize("method", ["grpo", "sdpo", "sc_sdpo"])
def test_each_verl_run_leaves_metrics_config_checkpoints_and_its_final_model(verl_dag, method):
    run = verl_dag / RUNS / method / "seed0"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]  # validation before training, then two steps
    assert all("val-core/synthetic_science/acc/mean@2" in r for r in records)
    assert all(r["actor/grad_norm"] >= 0 and r["timing_s/step"] > 0 for r in records[1:])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"] == method and config["backend"] == "verl" and config["rollouts_per_question"] == 4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_checkpoint"].endswith("global_step_2") and summary["steps"] == 2
    # the final HF directory is the last checkpoint's actor, weight for weight, in bf16 (verl's model merger
    # always exports bf16)
    from safetensors.torch import load_file

    final = load_file(run / "final" / "model.safetensors")
    actor = torch.load(run / "global_step_2/actor/model_world_size_1_rank_0.pt", weights_only=False)
    tied = json.loads((run / "final" / "config.json").read_text()).get("tie_word_embeddings")
    assert set(actor) - set(final) == ({"lm_head.weight"} if tied else set()) and set(final) <= set(actor)
    for name in final:
        local = actor[name].to_local() if hasattr(actor[name], "to_local") else actor[name]
        assert torch.equal(final[name], local.to(torch.bfloat16)), name
    assert (run / "final" / "tokenizer.json").is_file()
    if method != "grpo":
        assert (run / "global_step_2/teacher/teacher_world_size_1_rank_0.pt").is_file()
        assert config["teacher_signal"] == "topk_jsd"
        steps = [json.loads(line) for line in (run / "sd_steps.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps] == [1, 2] and all(len(s["weight"]) == 8 for s in steps)
        assert all("sc/pass_rate_hist/0" in r for r in records[1:])


def test_evaluation_tables_and_figures_cover_every_verl_run(verl_dag):
    for method in ("base", "grpo", "sdpo", "sc_sdpo"):
        results = verl_dag / f"results/eval/qwen3-tiny/synthetic_science/{method}/seed0/results.json"
        assert json.loads(results.read_text())
    main = pd.read_csv(verl_dag / "results/tables/main_table.csv")
    assert {"base", "grpo", "sdpo", "sc_sdpo"} <= set(main["method"])
    for name in FIGURE_NAMES:
        assert (verl_dag / "figures" / f"{name}.png").stat().st_size > 1000


def test_verl_runs_track_to_tensorboard_and_the_tables_read_budgets_and_benchmarks(verl_dag):
    """The tracking section drives verl's trainer.logger too (TensorBoard event files in each run directory via
    TENSORBOARD_DIR); finish-verl-run adds the cumulative step time; the budget columns (steps 1, 2) and the cost
    table (Snakemake benchmarks) cover the verl runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    main = pd.read_csv(verl_dag / "results/tables/main_table.csv")
    cost = pd.read_csv(verl_dag / "results/tables/cost_table.csv").set_index("method")
    for method in ("grpo", "sdpo", "sc_sdpo"):
        run = verl_dag / RUNS / method / "seed0"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        running = [0.0]
        for record in records[1:]:
            running.append(running[-1] + record["timing_s/step"])
        assert [r["timing_s/step_cumulative"] for r in records] == pytest.approx(running)
        events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        val = {e.step: e.value for e in events.Scalars("val-core/synthetic_science/acc/mean@2")}
        assert val == pytest.approx({r["step"]: r["val-core/synthetic_science/acc/mean@2"] for r in records})
        for budget, steps in (("1 step", 1), ("2 steps", 2)):
            cell = main[(main["method"] == method) & (main["metric"] == f"best mean@2 ≤ {budget}")
                        & (main["benchmark"] == "synthetic_science")]
            best = max(r["val-core/synthetic_science/acc/mean@2"] for r in records if r["step"] <= steps)
            assert cell["mean"].iloc[0] == pytest.approx(best)
        bench = pd.read_csv(verl_dag / "results/benchmarks/train/qwen3-tiny/synthetic_science" / method / "seed0.tsv",
                            sep="\t")
        assert cost.loc[method, "wall_hours"] == pytest.approx(bench["s"].iloc[0] / 3600, rel=1e-6)
        assert cost.loc[method, "max_rss_mb"] == pytest.approx(bench["max_rss"].iloc[0])
    assert {"ratio_sdpo_over_grpo", "ratio_sc_sdpo_over_sdpo"} <= set(cost.index)
