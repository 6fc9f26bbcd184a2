"""The result tables: main (model x method), ablation (exponent and normaliser), cost. CSV + Markdown + LaTeX.

Every table is built as a tidy frame first (one row per cell: mean, 95% t-interval, number of seeds; values
are accuracies in [0, 1]) and written as ``<prefix>.csv``; the Markdown and LaTeX renderings show percentages
"mean ± half-width" (no ± with a single seed), a column with the number of seeds of each row, and a footer
(Markdown) / caption (LaTeX) that says what ± is, which maj@k estimator the column holds and what the average
averages. The per-benchmark "average" is computed per seed over the benchmarks that every row of the model has
(so rows are comparable; a seed missing one of them has no average) before the interval is taken; with fewer
than two such benchmarks there is no average column.
Methods are found by algorithm (their keys are free labels): the main table holds the main grid's methods,
and the Δ row compares its SC-SDPO method with its SDPO method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.analysis.runs import ALGORITHM_ORDER, default_label, main_methods, method_of
from scsdpo_verl.analysis.stats import Interval, difference_interval, t_interval

AVERAGE = "average"
DELTA_METHOD = "delta_sc_sdpo_minus_sdpo"  # the Δ row's method with the default keys (see delta_method)
TIDY_COLUMNS = ("model", "method", "label", "benchmark", "metric", "mean", "half_width", "ci_low", "ci_high",
                "n_seeds")
SEEDS_COLUMN = "seeds"


def metric_pair(k: int = 16, *, maj: str = "bootstrap") -> tuple[str, str]:
    """Column names of (mean@k, maj@k); ``maj`` = "bootstrap" (verl's maj@k/mean) or "exact"."""
    maj_name = names.EVAL_MAJ_BOOTSTRAP if maj == "bootstrap" else names.EVAL_MAJ_EXACT
    return names.EVAL_MEAN.format(k=k), maj_name.format(k=k)


def display_metric(metric: str) -> str:
    """Header text of a metric column: maj@16_bootstrap is shown as maj@16 (the footer says which)."""
    return metric.removesuffix("_bootstrap")


def delta_method(sc_sdpo: str, sdpo: str) -> str:
    return f"delta_{sc_sdpo}_minus_{sdpo}"


def averaged_benchmarks(evals: pd.DataFrame, row_keys: Sequence[str], metric: str) -> dict[str, list[str]]:
    """Per model: the benchmarks every row (``row_keys`` besides model) has a value for; [] when fewer than 2."""
    present = evals.dropna(subset=[metric])
    common: dict[str, list[str]] = {}
    for model, part in present.groupby("model", sort=False):
        per_row = [set(rows["task"]) for _, rows in part.groupby(list(row_keys), dropna=False)]
        shared = set.intersection(*per_row) if per_row else set()
        common[model] = sorted(shared) if len(shared) >= 2 else []
    return common


def per_seed_values(evals: pd.DataFrame, group: Sequence[str], metric: str) -> pd.DataFrame:
    """``group`` columns (model first) + benchmark + seed -> value, adding benchmark "average": per seed, the mean
    over the benchmarks every row of the model has (``averaged_benchmarks``); a seed missing one gets none."""
    present = evals.dropna(subset=[metric])
    values = present[[*group, "task", "seed", metric]].rename(columns={"task": "benchmark", metric: "value"})
    averages = []
    for model, tasks in averaged_benchmarks(present, group, metric).items():
        if not tasks:
            continue
        part = values[(values["model"] == model) & values["benchmark"].isin(tasks)]
        per_seed = part.groupby([*group, "seed"], as_index=False, dropna=False).agg(
            value=("value", "mean"), benchmarks=("benchmark", "nunique"))
        averages.append(per_seed[per_seed["benchmarks"] == len(tasks)].drop(columns="benchmarks"))
    if averages:
        average = pd.concat(averages, ignore_index=True)
        average["benchmark"] = AVERAGE
        values = pd.concat([values, average], ignore_index=True)
    return values


def _cell(keys: dict, metric: str, interval: Interval) -> dict:
    return {**keys, "metric": metric, "mean": interval.mean, "half_width": interval.half_width,
            "ci_low": interval.low, "ci_high": interval.high, "n_seeds": interval.n}


def build_main_table(evals: pd.DataFrame, out_prefix: str | Path | None = None, *,
                     methods: Sequence[str] | None = None, k: int = 16, maj: str = "bootstrap") -> pd.DataFrame:
    """Main table from ``eval_frame`` rows: model x method, benchmark x {mean@k, maj@k} (+ average) and the
    per-model Δ row SC-SDPO − SDPO (paired over seeds). Writes <prefix>.csv/.md/.tex when given a prefix.

    ``methods``: method keys (default: the base model and the main grid's methods, found by algorithm).
    """
    methods = list(methods) if methods is not None else main_methods(evals)
    evals = evals[evals["method"].isin(methods)]
    if evals.empty:
        raise ValueError(f"no evaluation results for methods {list(methods)}")
    labels = dict(zip(evals["method"], evals["label"], strict=False))
    sdpo, sc_sdpo = method_of(evals, "sdpo"), method_of(evals, "sc_sdpo")
    delta = delta_method(sc_sdpo, sdpo) if sdpo and sc_sdpo else None
    averaged: dict[str, list[str]] = {}
    rows = []
    for metric in metric_pair(k, maj=maj):
        averaged = averaged_benchmarks(evals, ["model", "method"], metric)
        values = per_seed_values(evals, ["model", "method"], metric)
        for (model, method, benchmark), cell in values.groupby(["model", "method", "benchmark"], sort=False):
            keys = {"model": model, "method": method, "label": labels.get(method, default_label(method)),
                    "benchmark": benchmark}
            rows.append(_cell(keys, metric, t_interval(cell["value"].tolist())))
            if delta is None or method != sc_sdpo:
                continue
            reference = values[(values["model"] == model) & (values["method"] == sdpo)
                               & (values["benchmark"] == benchmark)]
            if reference.empty:
                continue
            interval = difference_interval(dict(zip(cell["seed"], cell["value"], strict=True)),
                                           dict(zip(reference["seed"], reference["value"], strict=True)))
            label = f"Δ {labels.get(sc_sdpo, sc_sdpo)} − {labels.get(sdpo, sdpo)}"
            rows.append(_cell({**keys, "method": delta, "label": label}, metric, interval))
    order = {m: i for i, m in enumerate(methods)}
    if delta is not None:
        order[delta] = len(order)
    table = _ordered(pd.DataFrame(rows), order)
    if out_prefix is not None:
        notes = [*interval_notes(table), maj_note(k, maj), average_note(averaged)]
        if delta is not None:
            notes.append(f"Δ: {labels.get(sc_sdpo, sc_sdpo)} − {labels.get(sdpo, sdpo)}, paired by seed.")
        write_table(table, out_prefix, row_keys=("model", "label"), title="Main results", notes=notes)
    return table


def variant_label(exponent: float, normalize: str | None) -> str:
    """Ablation row name, e.g. 'exponent 0.5, batch_mean'; exponent 0 is SDPO."""
    text = f"exponent {exponent:g}"
    return f"{text} (SDPO)" if exponent == 0 else f"{text}, {normalize}"


def build_ablation_table(evals: pd.DataFrame, out_prefix: str | Path | None = None, *, k: int = 16,
                         maj: str = "bootstrap") -> pd.DataFrame:
    """Ablation table: SDPO-family runs grouped by (exponent, normaliser), per model x benchmark x metric."""
    evals = evals[evals["algorithm"].isin(("sdpo", "sc_sdpo"))].copy()
    if evals.empty:
        raise ValueError("no SDPO/SC-SDPO evaluation results for the ablation table")
    evals["normalize"] = np.where(evals["exponent"] == 0, "-", evals["normalize"].fillna("batch_mean"))
    averaged: dict[str, list[str]] = {}
    rows = []
    for metric in metric_pair(k, maj=maj):
        averaged = averaged_benchmarks(evals, ["model", "exponent", "normalize"], metric)
        values = per_seed_values(evals, ["model", "exponent", "normalize"], metric)
        for (model, exponent, normalize, benchmark), cell in values.groupby(
                ["model", "exponent", "normalize", "benchmark"]):
            keys = {"model": model, "method": f"{exponent:g}/{normalize}",
                    "label": variant_label(exponent, normalize), "benchmark": benchmark,
                    "exponent": exponent, "normalize": normalize}
            rows.append(_cell(keys, metric, t_interval(cell["value"].tolist())))
    table = pd.DataFrame(rows).sort_values(["model", "exponent", "normalize"], kind="stable").reset_index(drop=True)
    if out_prefix is not None:
        notes = [*interval_notes(table), maj_note(k, maj), average_note(averaged)]
        write_table(table, out_prefix, row_keys=("model", "label"), title="Ablation", notes=notes)
    return table


# --------------------------------------------------------------------------------------------------- notes


def interval_notes(table: pd.DataFrame) -> list[str]:
    """What the cells are and what ± means, with the t quantile of each seed count present."""
    counts = sorted({int(n) for n in table["n_seeds"] if n >= 2})
    quantiles = ", ".join(f"t = {stats.t.ppf(0.975, df=n - 1):.2f} with {n} seeds" for n in counts)
    text = ("Cells: accuracy in %, mean over seeds ± the half-width of the 95% Student-t interval over seeds "
            f"({quantiles or 'no row has 2 seeds'}); no ± with one seed. Seeds: the number of seeds of the row.")
    notes = [text]
    if counts and counts[0] <= 3:
        notes.append(f"With {counts[0]} seeds the interval is wide by construction: read ± as 'no precision "
                     "claimed', not as the spread of the seeds.")
    return notes


def maj_note(k: int, maj: str) -> str:
    if maj == "bootstrap":
        return (f"maj@{k}: the bootstrap estimate of majority-vote accuracy (verl's maj@k/mean: the vote over {k} "
                f"answers drawn with replacement from the {k}, averaged over 1000 draws), not the single vote over "
                f"the {k} answers.")
    return f"maj@{k}: the exact majority vote over the {k} answers."


def average_note(averaged: Mapping[str, Sequence[str]]) -> str:
    parts = [f"{model}: {', '.join(tasks)}" if tasks else f"{model}: none (fewer than 2 benchmarks shared by every "
             "row)" for model, tasks in averaged.items()]
    return "average: per seed, the mean over the benchmarks every row of the model has (" + "; ".join(parts) + ")."


def read_benchmark(path: str | Path) -> dict[str, float]:
    """Wall and CPU seconds from a Snakemake ``benchmark:`` TSV (mean over its repeats)."""
    frame = pd.read_csv(path, sep="\t")
    for column in (names.BENCHMARK_WALL_S, names.BENCHMARK_CPU_S):
        if column not in frame:
            raise ValueError(f"{path}: column '{column}' missing")
    return {"wall_s": float(frame[names.BENCHMARK_WALL_S].mean()), "cpu_s": float(frame[names.BENCHMARK_CPU_S].mean())}


def build_cost_table(index: pd.DataFrame, training: pd.DataFrame, out_prefix: str | Path | None = None) -> pd.DataFrame:
    """Cost per (model, method), summed over tasks and seeds: runs, wall hours, CPU hours, GPU hours, tokens
    generated in training rollouts, and the median step time over all their steps.

    Wall time per run: its Snakemake benchmark (``benchmark_path`` column) if present, else the sum of
    ``timing_s/step``. CPU hours: the benchmark's cpu_time, else wall x threads. GPU hours: wall x ``gpus``
    (0 if unset). Tokens: sum over steps of response_length/mean x questions_per_step x group_size.
    """
    rows = []
    trained = index[index["run_dir"].notna()]
    for _, run in trained.iterrows():
        steps = training[(training["model"] == run["model"]) & (training["task"] == run["task"])
                         & (training["method"] == run["method"]) & (training["seed"] == run["seed"])]
        steps = steps[steps[names.STEP] > 0]
        step_times = steps[names.STEP_TIME].dropna() if names.STEP_TIME in steps else pd.Series(dtype=float)
        wall = float(step_times.sum())
        threads = float(run.get("threads", 1) if pd.notna(run.get("threads", 1)) else 1)
        cpu = wall * threads
        if isinstance(run.get("benchmark_path"), str):
            bench = read_benchmark(run["benchmark_path"])
            wall, cpu = bench["wall_s"], bench["cpu_s"]
        gpus = float(run.get("gpus", 0) if pd.notna(run.get("gpus", 0)) else 0)
        batch = float(run.get("questions_per_step", math.nan)) * float(run.get("group_size", math.nan))
        tokens = float((steps[names.RESPONSE_LENGTH] * batch).sum()) if names.RESPONSE_LENGTH in steps else math.nan
        rows.append({"model": run["model"], "method": run["method"], "label": run["label"], "wall_s": wall,
                     "cpu_s": cpu, "gpu_s": wall * gpus, "tokens": tokens, "step_times": step_times.tolist()})
    if not rows:
        raise ValueError("no training runs for the cost table")
    per_run = pd.DataFrame(rows)
    table = per_run.groupby(["model", "method", "label"], sort=False).agg(
        runs=("wall_s", "size"), wall_hours=("wall_s", lambda s: s.sum() / 3600),
        cpu_hours=("cpu_s", lambda s: s.sum() / 3600), gpu_hours=("gpu_s", lambda s: s.sum() / 3600),
        tokens_generated=("tokens", "sum"),
        median_step_s=("step_times", _median_of_lists),
    ).reset_index()
    algorithms = dict(zip(trained["method"], trained["algorithm"], strict=False))
    table = _ordered(table, {m: ALGORITHM_ORDER.get(a, len(ALGORITHM_ORDER)) for m, a in algorithms.items()})
    if out_prefix is not None:
        write_cost_table(table, out_prefix)
    return table


def _median_of_lists(lists: pd.Series) -> float:
    values = [v for values in lists for v in values]
    return float(np.median(values)) if values else math.nan


# --------------------------------------------------------------------------------------------------- rendering


def _ordered(table: pd.DataFrame, rank: Mapping[str, int]) -> pd.DataFrame:
    """Rows by model, then by ``rank`` of the method (unranked last, in order of appearance)."""
    order = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.assign(_rank=order).sort_values(["model", "_rank"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def format_cell(mean: float, half_width: float, *, percent: bool = True, digits: int = 1, plus_minus="±") -> str:
    """'80.9 ± 1.2' (percent of an accuracy); the ± part is left out without an interval; NaN -> '–'."""
    if mean is None or math.isnan(mean):
        return "–"
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:.{digits}f}"
    if half_width is not None and not math.isnan(half_width):
        text += f" {plus_minus} {half_width * scale:.{digits}f}"
    return text


def _seed_counts(counts: Sequence[int]) -> str:
    low, high = int(min(counts)), int(max(counts))
    return str(low) if low == high else f"{low}–{high}"


def wide_table(tidy: pd.DataFrame, row_keys: Sequence[str], *, plus_minus: str = "±") -> pd.DataFrame:
    """Rows ``row_keys`` + the row's number of seeds, columns "<benchmark> <metric>" (benchmarks in first-seen
    order, average last)."""
    benchmarks = [b for b in dict.fromkeys(tidy["benchmark"]) if b != AVERAGE]
    if AVERAGE in set(tidy["benchmark"]):
        benchmarks.append(AVERAGE)
    metrics = list(dict.fromkeys(tidy["metric"]))
    rows: dict[tuple, dict[str, str]] = {}
    seeds: dict[tuple, list[int]] = {}
    for _, cell in tidy.iterrows():
        key = tuple(cell[k] for k in row_keys)
        column = f"{cell['benchmark']} {display_metric(cell['metric'])}"
        rows.setdefault(key, {})[column] = format_cell(cell["mean"], cell["half_width"], plus_minus=plus_minus)
        if cell["benchmark"] != AVERAGE:
            seeds.setdefault(key, []).append(int(cell["n_seeds"]))
    columns = [f"{b} {display_metric(m)}" for b in benchmarks for m in metrics]
    frame = pd.DataFrame([{**dict(zip(row_keys, key, strict=True)), SEEDS_COLUMN: _seed_counts(seeds[key]), **values}
                          for key, values in rows.items()])
    return frame.reindex(columns=[*row_keys, SEEDS_COLUMN, *columns]).fillna("–")


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame, caption: str = "") -> str:
    """A booktabs tabular of a frame of strings (first column left, others right aligned)."""
    spec = "l" * 2 + "r" * (len(frame.columns) - 2) if len(frame.columns) > 2 else "l" * len(frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(tidy: pd.DataFrame, out_prefix: str | Path, *, row_keys: Sequence[str], title: str,
                notes: Sequence[str] = ()) -> None:
    """<prefix>.csv (tidy, fractions), <prefix>.md and <prefix>.tex (wide, percent, mean ± 95% CI), the ``notes``
    below the Markdown table and in the LaTeX caption: a table copied on its own still says what it shows."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(out_prefix.with_suffix(".csv"), index=False)
    wide = wide_table(tidy, row_keys)
    footer = "".join(f"\n{note}\n" for note in notes)
    out_prefix.with_suffix(".md").write_text(f"**{title}**\n\n" + to_markdown(wide) + footer)
    out_prefix.with_suffix(".tex").write_text(to_latex(wide, caption=" ".join([f"{title}.", *notes])))


def write_cost_table(table: pd.DataFrame, out_prefix: str | Path) -> None:
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_prefix.with_suffix(".csv"), index=False)
    shown = pd.DataFrame({
        "model": table["model"], "method": table["label"], "runs": table["runs"].astype(int).astype(str),
        "wall h": table["wall_hours"].map(lambda v: f"{v:.3f}"), "CPU h": table["cpu_hours"].map(lambda v: f"{v:.3f}"),
        "GPU h": table["gpu_hours"].map(lambda v: f"{v:.3f}"),
        "tokens generated": table["tokens_generated"].map(lambda v: "–" if math.isnan(v) else f"{v:,.0f}"),
        "median step s": table["median_step_s"].map(lambda v: "–" if math.isnan(v) else f"{v:.2f}"),
    })
    out_prefix.with_suffix(".md").write_text(to_markdown(shown))
    out_prefix.with_suffix(".tex").write_text(to_latex(shown, caption="Compute cost per method"))
