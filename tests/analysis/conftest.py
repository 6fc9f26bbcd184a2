"""A small fake results directory in the workflow's layout, with hand-chosen numbers.

Main grid: model "tiny", tasks "sci" and "tool", methods grpo/sdpo/sc_sdpo, seeds 0 and 1, plus the base
model (seed 0). Ablation (task "sci" only): sc_sdpo_exp1 (exponent 1) and sc_sdpo_max (batch_max).
Evaluation metrics are ``EVAL_VALUES[(task, method)][seed]`` for mean@16; maj@16 = mean@16 + 0.05 and the
bootstrap maj@16 = mean@16 + 0.02. Training logs: 6 steps of 4 questions x 4 rollouts (``HISTOGRAMS``), step
time 2 + seed seconds, validation at 0, 3, 6 (``val_at``). ``write_results(root, rename)`` writes the same runs
under other method keys (``rename``: key -> new key) to check that the analysis never relies on the keys.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from scsdpo_verl.analysis.runs import eval_frame, question_frame, run_index_from_workflow, training_frame

CONFIG = {
    "models": {"tiny": {}},
    "tasks": {"sci": {}, "tool": {}},
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


def val_at(step: int, method: str, seed: int) -> float:
    """Validation mean@4 of a run at a validation step: SDPO and GRPO coincide, SC-SDPO is 0.1 higher."""
    if step == 0:
        return 0.2
    return 0.2 + 0.05 * step + (0.1 if method == "sc_sdpo" else 0.0) + 0.02 * seed


def _metrics(method: str, seed: int) -> list[dict]:
    records = [{"step": 0, "val-core/src/acc/mean@4": val_at(0, method, seed), "val-core/src/acc/maj@4/mean": 0.25}]
    for step, hist in enumerate(HISTOGRAMS, start=1):
        record = {"step": step, "actor/grad_norm": 1.0 + 0.1 * step, "actor/entropy": 2.0 - 0.1 * step,
                  "response_length/mean": 10.0 + step + seed, "timing_s/step": 2.0 + seed,
                  "critic/score/mean": 0.5}
        record.update({f"sc/pass_rate_hist/{k}": float(c) for k, c in enumerate(hist)})
        if step % 3 == 0:
            record["val-core/src/acc/mean@4"] = val_at(step, method, seed)
            record["val-core/src/acc/maj@4/mean"] = 0.25 + 0.05 * step
        records.append(record)
    return records


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
            (eval_dir / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            if method == "base":
                continue
            run_dir = root / "runs" / "tiny" / task / key / f"seed{seed}"
            run_dir.mkdir(parents=True)
            config = {"method": spec["algorithm"], "exponent": spec.get("exponent", 0.5),
                      "normalize": spec.get("normalize", "batch_mean"), "rollouts_per_question": N,
                      "questions_per_step": 4, "threads": 2, "seed": seed}
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
            (run_dir / "metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in _metrics(method, seed)))
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
