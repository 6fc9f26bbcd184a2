"""From run and evaluation directories to the three data frames every table and figure reads.

The run index: one row per (model, task, method, seed), including the untrained model as method "base":

    model, task, method, algorithm, label, exponent, normalize, seed, run_dir, eval_dir
    [+ optional: group_size, questions_per_step, threads, gpus, benchmark_path, eval_benchmark_path]

``method`` is the workflow's method key (e.g. ``sc_sdpo_exp1``), ``algorithm`` one of base/grpo/sdpo/sc_sdpo,
``run_dir`` holds metrics.jsonl + config.yaml (None for base), ``eval_dir`` holds results.json + samples.jsonl.
From it:
  training_frame(index)   one row per logged step, run columns + every metric column (metrics.jsonl)
  eval_frame(index)       one row per evaluated run: run columns + mean@k, maj@k, maj@k_bootstrap
  question_frame(index)   one row per (run, question): run columns + question_id, difficulty, mean, maj, ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.core import group_pass_rates, grpo_advantages, sc_sdpo_weights, select_demonstrations

ALGORITHMS = ("base", "grpo", "sdpo", "sc_sdpo")
INDEX_COLUMNS = (*names.RUN_COLUMNS, "run_dir", "eval_dir")


# --------------------------------------------------------------------------------------------------- index


def make_run_index(entries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Validate run entries (dicts with at least model, task, method, seed) into the run index frame.

    Missing ``algorithm`` defaults to the method name; ``label`` to the method; exponent/normalize to NaN/None;
    run_dir/eval_dir to None. Fields of a run's config.yaml fill exponent/normalize/group size when absent.
    """
    rows = []
    for i, entry in enumerate(entries):
        for key in names.RUN_KEYS:
            if key not in entry:
                raise ValueError(f"run index entry {i}: missing field '{key}'")
        row = {"algorithm": entry["method"], "label": None, "exponent": math.nan, "normalize": None,
               "run_dir": None, "eval_dir": None, "ablation": False, **entry}
        if row["algorithm"] not in ALGORITHMS:
            raise ValueError(f"run index entry {i}: field 'algorithm' is {row['algorithm']!r}, not one of {ALGORITHMS}")
        config = read_run_config(row["run_dir"]) if row["run_dir"] else {}
        if row["exponent"] is None or (isinstance(row["exponent"], float) and math.isnan(row["exponent"])):
            row["exponent"] = float(config.get(names.CONFIG_EXPONENT, math.nan))
        if row["algorithm"] == "sdpo":
            row["exponent"] = 0.0  # SDPO is the exponent-0 member of the family
        if row["algorithm"] in ("base", "grpo"):
            row["exponent"], row["normalize"] = math.nan, None
        elif row["normalize"] is None:
            row["normalize"] = config.get(names.CONFIG_NORMALIZE, "batch_mean")
        for key, config_key in (("group_size", names.CONFIG_GROUP_SIZE),
                                ("questions_per_step", names.CONFIG_QUESTIONS_PER_STEP),
                                ("threads", names.CONFIG_THREADS),
                                ("norm_adv_by_std", names.CONFIG_NORM_ADV_BY_STD)):
            if key not in row and config_key in config:
                row[key] = config[config_key]
        if "teacher_signal" not in row:
            row["teacher_signal"] = teacher_signal(row["algorithm"], config)
        # a main-grid method under a free key is named after its algorithm; an ablation variant after its key
        row["label"] = row["label"] or default_label(row["method"] if row["ablation"] else row["algorithm"])
        row["ablation"] = bool(row["ablation"])
        row["seed"] = int(row["seed"])
        rows.append(row)
    if not rows:
        raise ValueError("the run index is empty")
    return pd.DataFrame(rows)


ALGORITHM_ORDER = {name: rank for rank, name in enumerate(ALGORITHMS)}


def main_methods(frame: pd.DataFrame, algorithms: Sequence[str] = ALGORITHMS) -> list[str]:
    """The main grid's method keys (ablation variants excluded) whose algorithm is in ``algorithms``, in the
    order base, GRPO, SDPO, SC-SDPO. The analysis finds methods by algorithm: their keys are free labels."""
    if frame.empty:
        return []
    ablation = frame["ablation"] if "ablation" in frame else pd.Series(False, index=frame.index)
    chosen = frame[~ablation.astype(bool) & frame["algorithm"].isin(algorithms)]
    pairs = dict(zip(chosen["method"], chosen["algorithm"], strict=True))
    return sorted(pairs, key=lambda m: (ALGORITHM_ORDER.get(pairs[m], len(ALGORITHMS)), m))


def method_of(frame: pd.DataFrame, algorithm: str) -> str | None:
    """The main grid's method with ``algorithm`` (None if absent); the config allows one per algorithm."""
    found = main_methods(frame, (algorithm,))
    if len(found) > 1:
        raise ValueError(f"several main-grid methods have algorithm {algorithm!r}: {found}")
    return found[0] if found else None


def teacher_signal(algorithm: str, config: Mapping[str, Any]) -> str | None:
    """What an SDPO-family run distils, from its recorded config: verl runs record ``teacher_signal``
    (``topk_jsd`` or ``sampled_token``) with ``topk``/``add_tail``/``alpha``; the local trainer always uses the
    top-k (+ tail) JSD. E.g. 'top-100 + tail JSD (alpha 0.5)'; None for GRPO and the base model."""
    if algorithm not in ("sdpo", "sc_sdpo"):
        return None
    signal = config.get("teacher_signal") or "topk_jsd"
    if signal != "topk_jsd":
        return signal.replace("_", "-")
    topk, tail, alpha = config.get("topk", 100), config.get("add_tail", True), config.get("alpha")
    if topk is None:  # the whole vocabulary: no tail bucket
        text = "full-vocabulary JSD"
    else:
        text = f"top-{topk}" + (" + tail JSD" if tail is not False else " JSD")
    return text + (f" (alpha {alpha:g})" if isinstance(alpha, (int, float)) else "")


def teacher_signals(index: pd.DataFrame) -> dict[str, str]:
    """Method key -> its runs' teacher signal (several, joined with ' / ', if runs differ); SDPO family only."""
    signals: dict[str, list[str]] = {}
    for method, signal in zip(index["method"], index.get("teacher_signal", pd.Series(dtype=object)), strict=False):
        if isinstance(signal, str) and signal not in signals.setdefault(method, []):
            signals[method].append(signal)
    return {method: " / ".join(values) for method, values in signals.items() if values}


def default_label(method: str) -> str:
    return {"base": "Base", "grpo": "GRPO", "grpo_std": "GRPO (std-norm.)", "sdpo": "SDPO",
            "sc_sdpo": "SC-SDPO"}.get(method, method)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's recorded config.yaml ({} if the file is absent)."""
    path = Path(run_dir) / names.CONFIG_FILE
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of config keys")
    return loaded


def run_index_from_workflow(config: Mapping[str, Any], results_dir: str | Path) -> pd.DataFrame:
    """The run index of a workflow run, from its config and the layout of ``results_dir``:

    runs/{model}/{task}/{method}/seed{seed}/ (training) and eval/{model}/{task}/{method}/seed{seed}/
    (evaluation; method "base" for the untrained model). Runs whose evaluation is missing keep eval_dir None.
    """
    results_dir = Path(results_dir)
    methods = {**config.get("methods", {}), **config.get("ablation", {}).get("methods", {})}
    ablation = config.get("ablation", {})
    entries = []
    verl = config.get("verl", {})
    gpus = verl.get("nodes", 1) * verl.get("gpus_per_node", 4) \
        if config.get("backend") == "verl" and not verl.get("cpu", False) else 0

    def benchmark(rule: str, model: str, task: str, method: str, seed: int) -> str:
        """The Snakemake benchmark file of one job (workflow/rules/*.smk write them there)."""
        return str(results_dir / names.BENCHMARK_DIR / rule / model / task / method / f"seed{seed}.tsv")

    def eval_dir(model: str, task: str, method: str, seed: int) -> str | None:
        path = results_dir / "eval" / model / task / method / f"seed{seed}"
        return str(path) if (path / names.EVAL_RESULTS_FILE).is_file() else None

    for model in config["models"]:
        for task in config["tasks"]:
            for method, spec in methods.items():
                is_ablation = method not in config.get("methods", {})
                if is_ablation and (model not in ablation.get("models", []) or task not in ablation.get("tasks", [])):
                    continue
                for seed in config["seeds"]:
                    run_dir = results_dir / "runs" / model / task / method / f"seed{seed}"
                    entries.append({
                        "model": model, "task": task, "method": method, "seed": seed,
                        "algorithm": spec.get("algorithm", method), "label": spec.get("label"),
                        "exponent": float(spec.get("exponent", math.nan)), "normalize": spec.get("normalize"),
                        "run_dir": str(run_dir) if run_dir.is_dir() else None,
                        "eval_dir": eval_dir(model, task, method, seed), "ablation": is_ablation,
                        "benchmark_path": benchmark("train", model, task, method, seed),
                        "eval_benchmark_path": benchmark("evaluate", model, task, method, seed), "gpus": gpus,
                    })
            for path in sorted((results_dir / "eval" / model / task / "base").glob("seed*")):
                if (path / names.EVAL_RESULTS_FILE).is_file():
                    entries.append({"model": model, "task": task, "method": "base", "algorithm": "base",
                                    "seed": int(path.name.removeprefix("seed")), "eval_dir": str(path),
                                    "ablation": False})
    return make_run_index(entries)


# --------------------------------------------------------------------------------------------------- loaders


def read_metrics(path: str | Path) -> pd.DataFrame:
    """metrics.jsonl -> one row per logged step (steps sorted; a re-logged step keeps its last record)."""
    path = Path(path)
    records = []
    for line_number, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {line_number + 1}: not valid JSON ({err.msg})") from None
        if names.STEP not in record:
            raise ValueError(f"{path}, line {line_number + 1}: field '{names.STEP}' missing")
        records.append(record)
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    return frame.drop_duplicates(names.STEP, keep="last").sort_values(names.STEP).reset_index(drop=True)


def _run_columns(row: pd.Series) -> dict[str, Any]:
    return {key: row[key] for key in names.RUN_COLUMNS}


def training_frame(index: pd.DataFrame) -> pd.DataFrame:
    """All runs' metrics.jsonl stacked, with the run columns (runs without a run_dir are skipped)."""
    frames = []
    for _, row in index.iterrows():
        if not isinstance(row.get("run_dir"), str):
            continue
        path = Path(row["run_dir"]) / names.METRICS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics log of run {row['model']}/{row['task']}/{row['method']}/"
                                    f"seed{row['seed']} not found")
        metrics = read_metrics(path)
        for key, value in _run_columns(row).items():
            metrics[key] = value
        metrics["group_size"] = row.get("group_size", math.nan)
        frames.append(metrics)
    if not frames:
        return pd.DataFrame(columns=[*names.RUN_COLUMNS, names.STEP])
    return pd.concat(frames, ignore_index=True)


def eval_frame(index: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated run: run columns, ``k``, num_questions and the metrics of results.json."""
    rows = []
    for _, row in index.iterrows():
        if not isinstance(row.get("eval_dir"), str):
            continue
        path = Path(row["eval_dir"]) / names.EVAL_RESULTS_FILE
        results = json.loads(path.read_text())
        if "metrics" not in results:
            raise ValueError(f"{path}: field 'metrics' missing")
        rows.append({**_run_columns(row), "k": results.get("repeats"),
                     "num_questions": results.get("num_questions"), **results["metrics"]})
    return pd.DataFrame(rows)


def question_frame(index: pd.DataFrame) -> pd.DataFrame:
    """One row per (evaluated run, question) from samples.jsonl: question_id, difficulty, mean, maj, maj_bootstrap,
    and accs (the per-sample accuracies as a tuple, None where the file has none)."""
    rows = []
    for _, row in index.iterrows():
        if not isinstance(row.get("eval_dir"), str):
            continue
        path = Path(row["eval_dir"]) / names.EVAL_SAMPLES_FILE
        for line_number, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            record = json.loads(line)
            for field in ("question_id", names.QUESTION_MEAN):
                if field not in record:
                    raise ValueError(f"{path}, line {line_number + 1}: field '{field}' missing")
            rows.append({**_run_columns(row), "question_id": record["question_id"],
                         "difficulty": record.get("difficulty"),
                         names.QUESTION_MEAN: record[names.QUESTION_MEAN],
                         names.QUESTION_MAJ: record.get(names.QUESTION_MAJ),
                         names.QUESTION_MAJ_BOOTSTRAP: record.get(names.QUESTION_MAJ_BOOTSTRAP),
                         "accs": tuple(record["accs"]) if record.get("accs") is not None else None})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------- derived


def metric_columns(frame: pd.DataFrame, pattern) -> list[str]:
    """Columns of ``frame`` whose names match a compiled regex from metric_names."""
    return [c for c in frame.columns if isinstance(c, str) and pattern.match(c)]


def pass_rate_histogram(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The per-step counts of questions with k = 0..n successes, as columns 0..n, and n."""
    columns = metric_columns(frame, names.PASS_RATE_HIST)
    if not columns:
        raise ValueError("no pass-rate histogram columns (sc/pass_rate_hist/<k>) in the training log")
    by_k = {int(names.PASS_RATE_HIST.match(c)["k"]): c for c in columns}
    n = max(by_k)
    hist = pd.DataFrame({k: frame[by_k[k]] if k in by_k else 0.0 for k in range(n + 1)})
    return hist.fillna(0.0), n


def bin_coefficients(counts: Sequence[float], n: int, *, algorithm: str, exponent: float = 0.5,
                     normalize: str = "batch_mean", norm_adv_by_std: bool = False) -> list[float]:
    """Per pass-rate bin k = 0..n: the total per-sample loss coefficient the step's questions with k successes got.

    The step is rebuilt from its histogram (c_k groups with k successes of n) and passed through the core
    objectives as the trainer does: SDPO/SC-SDPO weight = ``sc_sdpo_weights(p, exponent, normalize, active)``
    with active = "has a successful sibling other than itself" (``select_demonstrations``); SDPO is exponent 0.
    GRPO's coefficient is |A_i| from ``grpo_advantages``. Returns sum over the bin's samples.
    """
    success, group_of_bin = [], []
    for k, count in enumerate(counts):
        for _ in range(round(float(count))):
            success += [1.0] * k + [0.0] * (n - k)
            group_of_bin.append(k)
    if not success:
        return [0.0] * (n + 1)
    success_t = torch.tensor(success, dtype=torch.float64)
    group_ids = [g for g in range(len(group_of_bin)) for _ in range(n)]
    if algorithm == "grpo":
        coefficient = grpo_advantages(success_t, group_ids, norm_by_std=norm_adv_by_std).abs()
    elif algorithm in ("sdpo", "sc_sdpo"):
        demos = select_demonstrations(group_ids, success_t.bool(), ["y"] * len(group_ids))
        active = torch.tensor([d is not None for d in demos])
        coefficient = sc_sdpo_weights(group_pass_rates(success_t, group_ids),
                                      exponent=0.0 if algorithm == "sdpo" else exponent,
                                      normalize=normalize, active=active)
    else:
        raise ValueError(f"no loss coefficients for algorithm {algorithm!r}")
    per_group = coefficient.view(-1, n).sum(-1)
    totals = [0.0] * (n + 1)
    for g, k in enumerate(group_of_bin):
        totals[k] += float(per_group[g])
    return totals


def step_bin_coefficients(training: pd.DataFrame) -> pd.DataFrame:
    """Long frame: run columns, step, k, p_hat = k/n, questions (count), coefficient (bin total) per step."""
    rows = []
    for _, run in training.groupby(list(names.RUN_KEYS), sort=False):
        hist_frame = run.dropna(subset=metric_columns(run, names.PASS_RATE_HIST)[:1])
        if hist_frame.empty:
            continue
        hist, n = pass_rate_histogram(hist_frame)
        first = hist_frame.iloc[0]
        normalize = first["normalize"] if isinstance(first["normalize"], str) else "batch_mean"
        exponent = 0.5 if pd.isna(first["exponent"]) else float(first["exponent"])
        for (_, step_row), (_, counts) in zip(hist_frame.iterrows(), hist.iterrows(), strict=True):
            totals = bin_coefficients(counts.tolist(), n, algorithm=first["algorithm"], exponent=exponent,
                                      normalize=normalize)
            for k in range(n + 1):
                rows.append({**{c: first.get(c, False if c == "ablation" else None) for c in names.RUN_COLUMNS},
                             names.STEP: step_row[names.STEP],
                             "k": k, "p_hat": k / n, "questions": counts[k], "coefficient": totals[k]})
    return pd.DataFrame(rows)
