"""A small fake results directory in the workflow's layout, with hand-chosen numbers.

Main grid: model "tiny", tasks "sci" and "tool", methods grpo/sdpo/sc_sdpo, seeds 0 and 1, plus the base
model (seed 0). Ablation (task "sci" only): sc_sdpo_exp1 (exponent 1) and sc_sdpo_max (batch_max).
Evaluation metrics are ``EVAL_VALUES[(task, method)][seed]`` for mean@16; maj@16 = mean@16 + 0.05 and the
bootstrap maj@16 = mean@16 + 0.02. Training logs: 6 steps of 4 questions x 4 rollouts (``HISTOGRAMS``), step
time 2 + seed seconds (cumulative step x (2 + seed)), validation at 0, 3, 6 (``val_at``, best at step 3).
The tool task's samples hold real responses (``TOOL_RESPONSES``) for the scorer table, and results/data/<task>/
counts.json the task data rule's counts. ``write_results(root, rename)`` writes the same runs under other method
keys (``rename``: key -> new key) to check that the analysis never relies on the keys.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from scsdpo_verl.analysis.runs import eval_frame, question_frame, run_index_from_workflow, training_frame
from scsdpo_verl.tasks.tooluse import make_gold

CONFIG = {
    "models": {"tiny": {}},
    "tasks": {"sci": {"kind": "synthetic_science"}, "tool": {"kind": "synthetic_tooluse"}},
    "methods": {"grpo": {"algorithm": "grpo", "label": "GRPO"}, "sdpo": {"algorithm": "sdpo", "label": "SDPO"},
                "sc_sdpo": {"algorithm": "sc_sdpo", "exponent": 0.5, "normalize": "batch_mean", "label": "SC-SDPO"}},
    "seeds": [0, 1],
    "ablation": {"models": ["tiny"], "tasks": ["sci"], "methods": {
        "sc_sdpo_exp1": {"algorithm": "sc_sdpo", "exponent": 1.0, "normalize": "batch_mean", "label": "exp 1"},
        "sc_sdpo_max": {"algorithm": "sc_sdpo", "exponent": 0.5, "normalize": "batch_max", "label": "max norm"}}},
}
EVAL_VALUES = {
    ("sci", "base"): {0: 0.30},
    ("tool", "base"): {0: 0.20},
    ("sci", "grpo"): {0: 0.40, 1: 0.44},
    ("tool", "grpo"): {0: 0.30, 1: 0.30},
    ("sci", "sdpo"): {0: 0.40, 1: 0.50},
    ("tool", "sdpo"): {0: 0.30, 1: 0.40},
    ("sci", "sc_sdpo"): {0: 0.50, 1: 0.70},
    ("tool", "sc_sdpo"): {0: 0.40, 1: 0.40},
    ("sci", "sc_sdpo_exp1"): {0: 0.45, 1: 0.55},
    ("sci", "sc_sdpo_max"): {0: 0.62, 1: 0.66},
}
N = 4  # rollouts per question
# per step: questions with k = 0..4 successes (4 questions per step)
HISTOGRAMS = [[1, 1, 1, 1, 0], [0, 2, 1, 0, 1], [2, 0, 0, 1, 1], [0, 0, 4, 0, 0], [1, 0, 1, 1, 1], [0, 1, 1, 1, 1]]
# per question of the test set: (base-model mean@16, trained gain per method)
QUESTION_BASE = {"q0": 0.0, "q1": 0.125, "q2": 0.5, "q3": 1.0}
# the tool task's gold answers and the two responses every run logged per question, with (strict, reference)
# scores: q0 nested input (1, 0) and no call (0, 0); q1 true for 1 (0, 1) and exact (1, 1); q2 (1, 1) and a wrong
# value (0, 0); q3 a fenced input (1, 0) and exact (1, 1). So the scorers differ on 3 items and 3 of 8 responses;
# mean@2 strict (0.5 + 0.5 + 0.5 + 1) / 4 = 0.625, reference (0 + 1 + 0.5 + 0.5) / 4 = 0.5.
TOOL_GOLD = {"q0": make_gold([("addPet", {"pet": {"name": "Rex"}})]), "q1": make_gold([("f", {"n": 1})]),
             "q2": make_gold([("f", {"n": 1})]), "q3": make_gold([("g", {"a": 1})])}
TOOL_RESPONSES = {
    "q0": ['Action: addPet\nAction Input: {"pet": {"name": "Rex"}}', "no call"],
    "q1": ['Action: f\nAction Input: {"n": true}', 'Action: f\nAction Input: {"n": 1}'],
    "q2": ['Action: f\nAction Input: {"n": 1}', 'Action: f\nAction Input: {"n": 2}'],
    "q3": ['Action: g\nAction Input: ```json\n{"a": 1}\n```', 'Action: g\nAction Input: {"a": 1}'],
}
# Snakemake benchmark of each training job: (wall s, CPU s, max_rss MB) for seed 0; seed 1 adds 10 s, 20 s, 100 MB.
# Every evaluation job: 30 s, 40 s, 800 MB.
TRAIN_BENCH = {"grpo": (100, 150, 1000), "sdpo": (200, 380, 1500), "sc_sdpo": (210, 400, 1600),
               "sc_sdpo_exp1": (205, 390, 1550), "sc_sdpo_max": (215, 410, 1650)}
EVAL_BENCH = (30, 40, 800)


def benchmark_tsv(wall: float, cpu: float, rss: float) -> str:
    """A Snakemake benchmark file's text (its columns)."""
    return ("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{wall}\t0:00:00\t{rss}\t{rss + 50}\t{rss}\t{rss}\t0.0\t0.0\t50.0\t{cpu}\n")


TOOL_COUNTS = {"train": 10, "test": 4, "scorer": "strict", "gold_disagreements": {"test": 1, "question_ids": ["q0"]}}


def val_at(step: int, method: str, seed: int) -> float:
    """Validation mean@4 of a run at a validation step: SDPO and GRPO coincide, SC-SDPO is 0.1 higher; every run
    peaks at step 3 (so its best within a budget differs from its last validation)."""
    if step == 0:
        return 0.2
    return 0.2 + {3: 0.15, 6: 0.10}[step] + (0.1 if method == "sc_sdpo" else 0.0) + 0.02 * seed


def _metrics(method: str, seed: int) -> list[dict]:
    records = [{"step": 0, "val-core/src/acc/mean@4": val_at(0, method, seed), "val-core/src/acc/maj@4/mean": 0.25,
                "timing_s/step_cumulative": 0.0}]
    for step, hist in enumerate(HISTOGRAMS, start=1):
        record = {"step": step, "actor/grad_norm": 1.0 + 0.1 * step, "actor/entropy": 2.0 - 0.1 * step,
                  "response_length/mean": 10.0 + step + seed, "timing_s/step": 2.0 + seed,
                  "timing_s/step_cumulative": step * (2.0 + seed), "critic/score/mean": 0.5}
        record.update({f"sc/pass_rate_hist/{k}": float(c) for k, c in enumerate(hist)})
        if method in ("sdpo", "sc_sdpo"):
            record["sd/divergence_mean"] = 0.01 * step + (0.005 if method == "sc_sdpo" else 0.0)
        if step % 3 == 0:
            record["val-core/src/acc/mean@4"] = val_at(step, method, seed)
            record["val-core/src/acc/maj@4/mean"] = 0.25 + 0.05 * step
        records.append(record)
    return records


def base_samples(pass_rate: float, k: int = 16) -> list[float]:
    """k per-sample accuracies, each half of them with ``pass_rate`` successes."""
    half = [1.0] * round(pass_rate * k / 2) + [0.0] * (k // 2 - round(pass_rate * k / 2))
    return half + half


def gain_of(method: str, seed: int) -> float:
    """The trained model's accuracy gain on every question (capped at accuracy 1)."""
    return 0.0 if method == "base" else {"grpo": 0.1, "sdpo": 0.2}.get(method, 0.3) + 0.1 * seed


def write_results(root, rename: dict[str, str] | None = None) -> dict:
    """The fake results under ``root``; returns the workflow config describing them (keys renamed)."""
    rename = rename or {}
    specs = {**CONFIG["methods"], **CONFIG["ablation"]["methods"]}
    for (task, method), per_seed in EVAL_VALUES.items():
        spec = specs.get(method, {})
        key = rename.get(method, method)
        for seed, value in per_seed.items():
            eval_dir = root / "eval" / "tiny" / task / key / f"seed{seed}"
            eval_dir.mkdir(parents=True)
            metrics = {"mean@16": value, "maj@16": value + 0.05, "maj@16_bootstrap": value + 0.02}
            (eval_dir / "results.json").write_text(json.dumps({"repeats": 16, "num_questions": 4, "metrics": metrics}))
            gain = gain_of(method, seed)
            lines = [{"question_id": q, "difficulty": 1, "mean": min(1.0, base + gain), "maj": base,
                      "maj_bootstrap": base} for q, base in QUESTION_BASE.items()]
            if method == "base":  # per-sample accuracies whose two halves both have the question's pass rate
                lines = [{**line, "accs": base_samples(QUESTION_BASE[line["question_id"]])} for line in lines]
            if task == "tool":
                lines = [{**line, "ground_truth": TOOL_GOLD[line["question_id"]],
                          "responses": TOOL_RESPONSES[line["question_id"]]} for line in lines]
            (eval_dir / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            bench = root / "benchmarks" / "evaluate" / "tiny" / task / key / f"seed{seed}.tsv"
            bench.parent.mkdir(parents=True, exist_ok=True)
            bench.write_text(benchmark_tsv(*EVAL_BENCH))
            if method == "base":
                continue
            wall, cpu, rss = TRAIN_BENCH[method]
            bench = root / "benchmarks" / "train" / "tiny" / task / key / f"seed{seed}.tsv"
            bench.parent.mkdir(parents=True, exist_ok=True)
            bench.write_text(benchmark_tsv(wall + 10 * seed, cpu + 20 * seed, rss + 100 * seed))
            run_dir = root / "runs" / "tiny" / task / key / f"seed{seed}"
            run_dir.mkdir(parents=True)
            config = {"method": spec["algorithm"], "exponent": spec.get("exponent", 0.5),
                      "normalize": spec.get("normalize", "batch_mean"), "rollouts_per_question": N,
                      "questions_per_step": 4, "threads": 2, "seed": seed}
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
            (run_dir / "metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in _metrics(method, seed)))
    for task in CONFIG["tasks"]:  # the task data rule's counts (tool use: the scorers' gold disagreements)
        (root / "data" / task).mkdir(parents=True, exist_ok=True)
        counts = TOOL_COUNTS if task == "tool" else {"train": 10, "test": 4}
        (root / "data" / task / "counts.json").write_text(json.dumps(counts))
    config = {**CONFIG, "methods": {rename.get(k, k): v for k, v in CONFIG["methods"].items()}}
    config["ablation"] = {**CONFIG["ablation"],
                          "methods": {rename.get(k, k): v for k, v in CONFIG["ablation"]["methods"].items()}}
    return config


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_results(root)
    return root


@pytest.fixture(scope="session")
def index(results_dir) -> pd.DataFrame:
    return run_index_from_workflow(CONFIG, results_dir)


@pytest.fixture(scope="session")
def training(index) -> pd.DataFrame:
    return training_frame(index)


@pytest.fixture(scope="session")
def evals(index) -> pd.DataFrame:
    return eval_frame(index)


@pytest.fixture(scope="session")
def questions(index) -> pd.DataFrame:
    return question_frame(index)
