"""The result tables: main (model x method), gains (trained - base, SC-SDPO - SDPO), ablation (exponent and
normaliser), cost. CSV + Markdown + LaTeX.

Every table is built as a tidy frame first (one row per cell: mean, 95% t-interval, number of seeds; values
are accuracies in [0, 1]) and written as ``<prefix>.csv``; the Markdown and LaTeX renderings show percentages
"mean ± half-width" (no ± with a single seed), a column with the number of seeds of each row, and a footer
(Markdown) / caption (LaTeX) that says what ± is, which maj@k estimator the column holds and what the average
averages. The per-benchmark "average" is computed per seed over the benchmarks that every row of the model has
(so rows are comparable; a seed missing one of them has no average) before the interval is taken; with fewer
than two such benchmarks there is no average column.
Methods are found by algorithm (their keys are free labels): the main table holds the main grid's methods,
and the Δ row compares its SC-SDPO method with its SDPO method.

Next to each benchmark's final columns (the final checkpoint evaluated with lm-eval: "final mean@k", "final
maj@k"), the main and ablation tables hold one "best mean@k ≤ B" column per budget B of the config (analysis.budgets:
the best in-training validation within B, the SDPO paper's protocol); a cell of a row with a run that ended before
B is marked "*". Cells also give the standard deviation over seeds ("sd", what papers print as mean ± std) next to
the 95% interval. With published numbers mapped (analysis.published), the main table gets "(paper)" rows and
"this run − paper" rows, and ``build_paper_comparison`` writes the comparison on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.analysis.budgets import is_budget_metric
from scsdpo_verl.analysis.published import Published, PublishedNames, compare_with_published, paper_rows, source_notes
from scsdpo_verl.analysis.runs import ALGORITHM_ORDER, default_label, main_methods, method_of
from scsdpo_verl.analysis.stats import Interval, difference_interval, t_interval

AVERAGE = names.AVERAGE_BENCHMARK
DELTA_METHOD = "delta_sc_sdpo_minus_sdpo"  # the Δ row's method with the default keys (see delta_method)
TIDY_COLUMNS = ("model", "method", "label", "benchmark", "metric", "mean", "half_width", "ci_low", "ci_high",
                "std", "n_seeds", "budget_not_reached")
SEEDS_COLUMN = "seeds"
REACHED = " reached"  # suffix of the per-run column saying whether the run got to a budget
NOT_REACHED_MARK = "*"


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


def _cell(keys: dict, metric: str, interval: Interval, not_reached: bool = False) -> dict:
    return {**keys, "metric": metric, "mean": interval.mean, "half_width": interval.half_width,
            "ci_low": interval.low, "ci_high": interval.high, "std": interval.std, "n_seeds": interval.n,
            "budget_not_reached": not_reached}


def add_budget_columns(evals: pd.DataFrame, budgets: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """``evals`` with one column per budget metric of ``budgets`` (budgets.best_within_budgets: each run's best
    validation within the budget; NaN for runs without a training log, e.g. the base model) and a companion
    "<metric> reached" column; returns it and the budget metrics in order."""
    if budgets is None or budgets.empty:
        return evals, []
    keys = list(names.RUN_KEYS)
    metrics = list(dict.fromkeys(budgets["metric"]))
    indexed = budgets.set_index([*keys, "metric"])
    values = indexed["value"].unstack("metric")
    reached = indexed["reached"].astype(float).unstack("metric").add_suffix(REACHED)
    merged = evals.merge(values.join(reached), left_on=keys, right_index=True, how="left")
    return merged, metrics


def not_reached(evals: pd.DataFrame, metric: str, model: str, benchmark: str, column: str,
                values: Sequence) -> bool:
    """Whether a run behind a budget cell (``column`` in ``values``; any benchmark for the average) ended before
    the budget."""
    flag = metric + REACHED
    if flag not in evals:
        return False
    rows = evals[(evals["model"] == model) & evals[column].isin(list(values))]
    if benchmark != AVERAGE:
        rows = rows[rows["task"] == benchmark]
    return bool((rows[flag].dropna() == 0).any())


def build_main_table(evals: pd.DataFrame, out_prefix: str | Path | None = None, *,
                     methods: Sequence[str] | None = None, k: int = 16, maj: str = "bootstrap",
                     budgets: pd.DataFrame | None = None,
                     published: tuple[Published, PublishedNames] | None = None,
                     teacher_signals: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Main table from ``eval_frame`` rows: model x method, benchmark x {final mean@k, final maj@k, best mean@k
    within each budget of ``budgets`` (budgets.best_within_budgets)} (+ average) and the per-model Δ row SC-SDPO −
    SDPO (paired over seeds); with ``published`` (numbers and the config's names for them), the "(paper)" and
    "this run − paper" rows. Writes <prefix>.csv/.md/.tex when given a prefix.

    ``methods``: method keys (default: the base model and the main grid's methods, found by algorithm).
    ``teacher_signals``: method key -> what its teacher signal is (runs.teacher_signals), said below the table.
    """
    methods = list(methods) if methods is not None else main_methods(evals)
    evals = evals[evals["method"].isin(methods)]
    if evals.empty:
        raise ValueError(f"no evaluation results for methods {list(methods)}")
    evals, budget_metrics = add_budget_columns(evals, budgets)
    labels = dict(zip(evals["method"], evals["label"], strict=False))
    sdpo, sc_sdpo = method_of(evals, "sdpo"), method_of(evals, "sc_sdpo")
    delta = delta_method(sc_sdpo, sdpo) if sdpo and sc_sdpo else None
    averaged: dict[str, list[str]] = {}
    rows = []
    for metric in [*metric_pair(k, maj=maj), *budget_metrics]:
        if metric not in evals:
            continue
        averaged = averaged_benchmarks(evals, ["model", "method"], metric) if metric == metric_pair(k)[0] \
            else averaged
        values = per_seed_values(evals, ["model", "method"], metric)
        for (model, method, benchmark), cell in values.groupby(["model", "method", "benchmark"], sort=False):
            keys = {"model": model, "method": method, "label": labels.get(method, default_label(method)),
                    "benchmark": benchmark}
            short = not_reached(evals, metric, model, benchmark, "method", [method])
            rows.append(_cell(keys, metric, t_interval(cell["value"].tolist()), short))
            if delta is None or method != sc_sdpo:
                continue
            reference = values[(values["model"] == model) & (values["method"] == sdpo)
                               & (values["benchmark"] == benchmark)]
            if reference.empty:
                continue
            interval = difference_interval(dict(zip(cell["seed"], cell["value"], strict=True)),
                                           dict(zip(reference["seed"], reference["value"], strict=True)))
            label = f"Δ {labels.get(sc_sdpo, sc_sdpo)} − {labels.get(sdpo, sdpo)}"
            short = not_reached(evals, metric, model, benchmark, "method", [sc_sdpo, sdpo])
            rows.append(_cell({**keys, "method": delta, "label": label}, metric, interval, short))
    order = {m: i for i, m in enumerate(methods)}
    if delta is not None:
        order[delta] = len(order)
    table = _ordered(pd.DataFrame(rows, columns=TIDY_COLUMNS), order)
    comparison = pd.DataFrame()
    if published is not None:
        comparison = main_table_comparison(table, evals, published, k=k, maj=maj)
        extra = pd.DataFrame(paper_rows(comparison), columns=TIDY_COLUMNS).assign(budget_not_reached=False)
        if not extra.empty:  # each model's paper rows after its own rows
            table = pd.concat([table, extra], ignore_index=True)
            model_rank = {m: i for i, m in enumerate(dict.fromkeys(table["model"]))}
            table = table.assign(_model=table["model"].map(model_rank)).sort_values("_model", kind="stable") \
                .drop(columns="_model").reset_index(drop=True)
    if out_prefix is not None:
        notes = [*interval_notes(table), final_note(k, maj), *budget_notes(budget_metrics, budgets),
                 average_note(averaged)]
        if delta is not None:
            notes.append(f"Δ: {labels.get(sc_sdpo, sc_sdpo)} − {labels.get(sdpo, sdpo)}, paired by seed.")
        if teacher_signals:
            shown = [f"{labels.get(m, m)}: {signal}" for m, signal in teacher_signals.items() if m in labels]
            notes.append("Teacher signal (the runs' recorded config): " + "; ".join(shown) + ".")
        if published is not None:
            notes.extend(source_notes(published[0], comparison))
        write_table(table, out_prefix, row_keys=("model", "label"), title="Main results", notes=notes)
    return table


def main_table_comparison(table: pd.DataFrame, evals: pd.DataFrame, published: tuple[Published, PublishedNames],
                          *, k: int = 16, maj: str = "bootstrap") -> pd.DataFrame:
    """The published numbers beside the main table's cells (published.compare_with_published)."""
    sdpo, sc_sdpo = method_of(evals, "sdpo"), method_of(evals, "sc_sdpo")
    roles = {algorithm: method_of(evals, algorithm) for algorithm in ("grpo", "sdpo", "sc_sdpo")}
    roles["base"] = "base" if "base" in set(evals["method"]) else None
    roles[DELTA_METHOD] = delta_method(sc_sdpo, sdpo) if sdpo and sc_sdpo else None
    mean, maj_metric = metric_pair(k, maj=maj)
    return compare_with_published(table, published[0], published[1], roles=roles,
                                  final_metrics={"mean": mean, "maj": maj_metric})


def build_paper_comparison(comparison: pd.DataFrame, published: Published, out_prefix: str | Path) -> pd.DataFrame:
    """paper_comparison.csv/.md/.tex: every mapped published value, this run's cell it is compared with, and the
    difference (percent points in the renderings); an empty table says that nothing was mapped."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(out_prefix.with_suffix(".csv"), index=False)
    shown = pd.DataFrame({
        "model": comparison["model"], "method": comparison["label"],
        "benchmark": comparison["published_benchmark"], "metric": comparison["published_metric"],
        "budget": comparison["budget"].replace("", "–"),
        "source": [f"{s}†" if sec else s for s, sec in zip(comparison["source"], comparison["secondary"],
                                                            strict=True)],
        "paper": [format_cell(v, math.nan) for v in comparison["paper"]],
        "this run": [format_cell(m, h, std=sd) for m, h, sd in
                     zip(comparison["this_run"], comparison["half_width"], comparison["std"], strict=True)],
        "compared with": [display_metric(m) if m else "not compared" for m in comparison["compared_with"]],
        "this run − paper": [format_cell(d, math.nan, signed=True) for d in comparison["difference"]],
    })
    notes = ["Accuracy in %; this run: mean over seeds ± the half-width of the 95% t-interval (sd: standard "
             "deviation over seeds); † secondary source. Sources:"]
    notes += [f"{name}{'†' if info['secondary'] else ''}: {' '.join(info['citation'].split())} ({info['where']})"
              for name, info in published.sources.items()]
    if comparison.empty:
        notes.insert(0, "No published number is mapped onto this config's models and tasks "
                     "(reporting.published.models / benchmarks).")
    footer = "".join(f"\n{note}\n" for note in notes)
    out_prefix.with_suffix(".md").write_text("**Published numbers beside this run**\n\n" + to_markdown(shown) + footer)
    out_prefix.with_suffix(".tex").write_text(to_latex(shown, caption=" ".join(["Published numbers beside this run.",
                                                                                  *notes])))
    return comparison


def variant_label(exponent: float, normalize: str | None) -> str:
    """Ablation row name, e.g. 'exponent 0.5, batch_mean'; exponent 0 is SDPO."""
    text = f"exponent {exponent:g}"
    return f"{text} (SDPO)" if exponent == 0 else f"{text}, {normalize}"


def build_ablation_table(evals: pd.DataFrame, out_prefix: str | Path | None = None, *, k: int = 16,
                         maj: str = "bootstrap", budgets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ablation table: SDPO-family runs grouped by (exponent, normaliser), per model x benchmark x metric (final
    mean@k and maj@k, best mean@k within each budget of ``budgets``)."""
    evals = evals[evals["algorithm"].isin(("sdpo", "sc_sdpo"))].copy()
    if evals.empty:
        raise ValueError("no SDPO/SC-SDPO evaluation results for the ablation table")
    evals["normalize"] = np.where(evals["exponent"] == 0, "-", evals["normalize"].fillna("batch_mean"))
    evals, budget_metrics = add_budget_columns(evals, budgets)
    averaged: dict[str, list[str]] = {}
    rows = []
    for metric in [*metric_pair(k, maj=maj), *budget_metrics]:
        if metric not in evals:
            continue
        if metric == metric_pair(k)[0]:
            averaged = averaged_benchmarks(evals, ["model", "exponent", "normalize"], metric)
        values = per_seed_values(evals, ["model", "exponent", "normalize"], metric)
        for (model, exponent, normalize, benchmark), cell in values.groupby(
                ["model", "exponent", "normalize", "benchmark"]):
            keys = {"model": model, "method": f"{exponent:g}/{normalize}",
                    "label": variant_label(exponent, normalize), "benchmark": benchmark,
                    "exponent": exponent, "normalize": normalize}
            runs = evals[(evals["exponent"] == exponent) & (evals["normalize"] == normalize)]["method"]
            short = not_reached(evals, metric, model, benchmark, "method", set(runs))
            rows.append(_cell(keys, metric, t_interval(cell["value"].tolist()), short))
    table = pd.DataFrame(rows).sort_values(["model", "exponent", "normalize"], kind="stable").reset_index(drop=True)
    if out_prefix is not None:
        notes = [*interval_notes(table), final_note(k, maj), *budget_notes(budget_metrics, budgets),
                 average_note(averaged)]
        write_table(table, out_prefix, row_keys=("model", "label"), title="Ablation", notes=notes)
    return table


def build_gain_table(evals: pd.DataFrame, out_prefix: str | Path | None = None, *, k: int = 16,
                     maj: str = "bootstrap") -> pd.DataFrame:
    """Did training move the model, and by how much does SC-SDPO differ from SDPO: per model x benchmark x
    {final mean@k, final maj@k}, each trained main-grid method minus the base model,

        g_s = x_s - b,   b = the base model's value (mean of its evaluations, one checkpoint),

    and SC-SDPO minus SDPO paired by seed, d_s = x_s(SC-SDPO) - x_s(SDPO); each with its 95% Student-t
    interval over seeds (stats.t_interval) and whether that interval excludes 0. The same numbers as the main
    table's rows, stated as the differences a reader checks. Writes <prefix>.csv/.md/.tex when given a prefix."""
    methods = main_methods(evals)
    base, sdpo, sc_sdpo = method_of(evals, "base"), method_of(evals, "sdpo"), method_of(evals, "sc_sdpo")
    labels = dict(zip(evals["method"], evals["label"], strict=False))
    rows = []
    for metric in metric_pair(k, maj=maj):
        if metric not in evals:
            continue
        values = per_seed_values(evals[evals["method"].isin(methods)], ["model", "method"], metric)
        for (model, benchmark), part in values.groupby(["model", "benchmark"], sort=False):
            per_method = {m: dict(zip(cells["seed"], cells["value"], strict=True))
                          for m, cells in part.groupby("method", sort=False)}
            comparisons = []
            if base in per_method:
                reference = float(np.mean(list(per_method[base].values())))
                comparisons += [(m, f"{labels.get(m, m)} − {labels.get(base, 'Base')}",
                                 t_interval([v - reference for v in per_method[m].values()]))
                                for m in methods if m != base and m in per_method]
            if sdpo in per_method and sc_sdpo in per_method:
                comparisons.append((delta_method(sc_sdpo, sdpo), f"{labels[sc_sdpo]} − {labels[sdpo]}",
                                    difference_interval(per_method[sc_sdpo], per_method[sdpo])))
            for method, label, interval in comparisons:
                excludes = bool(interval.low > 0 or interval.high < 0)  # False when there is no interval (NaN)
                rows.append({**_cell({"model": model, "method": method, "label": label, "benchmark": benchmark},
                                     metric, interval), "excludes_zero": excludes})
    table = pd.DataFrame(rows, columns=[*TIDY_COLUMNS, "excludes_zero"]).drop(columns="budget_not_reached")
    if out_prefix is not None:
        _write_gain_table(table, Path(out_prefix), k=k, maj=maj)
    return table


def _write_gain_table(table: pd.DataFrame, out_prefix: Path, *, k: int, maj: str) -> None:
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_prefix.with_suffix(".csv"), index=False)
    shown, notes = _shown_gain_table(table, k=k, maj=maj)
    footer = "".join(f"\n{note}\n" for note in notes)
    out_prefix.with_suffix(".md").write_text("**Gains: trained minus base, SC-SDPO minus SDPO**\n\n"
                                             + to_markdown(shown) + footer)
    out_prefix.with_suffix(".tex").write_text(to_latex(shown, caption=" ".join(["Gains.", *notes])))


def gain_table_markdown(table: pd.DataFrame, *, k: int = 16, maj: str = "bootstrap") -> str:
    """The gain table (``build_gain_table``) as the markdown rows of gains.md, without its title and notes."""
    return to_markdown(_shown_gain_table(table, k=k, maj=maj)[0])


def _shown_gain_table(table: pd.DataFrame, *, k: int, maj: str) -> tuple[pd.DataFrame, list[str]]:
    """The gain table's displayed columns (points, signed) and the notes under it."""

    def points(value: float) -> str:
        return "–" if math.isnan(value) else f"{100 * value:+.1f}"

    shown = pd.DataFrame([{
        "model": row["model"], "difference": row["label"], "benchmark": row["benchmark"],
        "metric": f"final {display_metric(row['metric'])}",
        "mean ± half-width": format_cell(row["mean"], row["half_width"], signed=True),
        "95% interval": f"[{points(row['ci_low'])}, {points(row['ci_high'])}]",
        "seeds": int(row["n_seeds"]), "excludes 0": "yes" if row["excludes_zero"] else "no",
    } for _, row in table.iterrows()], columns=["model", "difference", "benchmark", "metric", "mean ± half-width",
                                                "95% interval", "seeds", "excludes 0"])
    notes = [f"Differences in accuracy points of lm-eval's final mean@{k} / maj@{k} on the test split, mean over "
             "seeds ± the half-width of the 95% Student-t interval over seeds. Method − Base: each seed's final "
             "checkpoint minus the base model (one checkpoint, no interval of its own). SC-SDPO − SDPO: paired by "
             "seed. 'excludes 0': the interval lies entirely above or below 0 (never with one seed).",
             maj_note(k, maj)]
    seeds = [int(n) for n in table["n_seeds"] if n >= 2]
    if seeds and min(seeds) <= 3:
        notes.append(f"With {min(seeds)} seeds an interval says little: two seeds with the same difference give "
                     "an interval of width 0 that 'excludes 0'.")
    return shown, notes


# --------------------------------------------------------------------------------------------------- notes


def interval_notes(table: pd.DataFrame) -> list[str]:
    """What the cells are and what ± means, with the t quantile of each seed count present."""
    counts = sorted({int(n) for n in table["n_seeds"] if n >= 2})
    quantiles = ", ".join(f"t = {stats.t.ppf(0.975, df=n - 1):.2f} with {n} seeds" for n in counts)
    text = ("Cells: accuracy in %, mean over seeds ± the half-width of the 95% Student-t interval over seeds "
            f"({quantiles or 'no row has 2 seeds'}), then (sd: the standard deviation over seeds, the papers' "
            "mean ± std); no ± and no sd with one seed. Seeds: the number of seeds of the row.")
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


def final_note(k: int, maj: str) -> str:
    """What the final columns are, with the maj@k estimator."""
    return (f"final mean@{k} / final maj@{k}: the final checkpoint, evaluated with lm-eval ({k} samples per "
            f"question of the test split). {maj_note(k, maj)}")


def budget_notes(metrics: Sequence[str], budgets: pd.DataFrame | None) -> list[str]:
    """What the best-within-budget columns are (analysis.budgets), and the mark of runs shorter than a budget."""
    if not metrics:
        return []
    axis = "training steps" if budgets is not None and str(budgets["budget"].iloc[0]).endswith(("step", "steps")) \
        else "cumulative step time (timing_s/step summed; validation excluded)"
    return [f"{', '.join(metrics)}: per run, the highest validation mean@k during training (k samples per question "
            f"of the test split) among the evaluations within the budget of {axis}, the one before the first step "
            f"included (the SDPO paper's protocol); then the mean over seeds. {NOT_REACHED_MARK}: a run of the row "
            "ended before the budget (its best over the whole run)."]


def average_note(averaged: Mapping[str, Sequence[str]]) -> str:
    parts = [f"{model}: {', '.join(tasks)}" if tasks else f"{model}: none (fewer than 2 benchmarks shared by every "
             "row)" for model, tasks in averaged.items()]
    return "average: per seed, the mean over the benchmarks every row of the model has (" + "; ".join(parts) + ")."


def read_benchmark(path: str | Path) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak resident memory (MB) from a Snakemake ``benchmark:`` TSV (mean over its
    repeats); a missing file or column is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Snakemake benchmark file not found (every rule writes one)")
    frame = pd.read_csv(path, sep="\t")
    for column in (names.BENCHMARK_WALL_S, names.BENCHMARK_CPU_S, names.BENCHMARK_MAX_RSS_MB):
        if column not in frame:
            raise ValueError(f"{path}: column '{column}' missing")
    return {"wall_s": float(frame[names.BENCHMARK_WALL_S].mean()), "cpu_s": float(frame[names.BENCHMARK_CPU_S].mean()),
            "max_rss_mb": float(frame[names.BENCHMARK_MAX_RSS_MB].max())}


COST_COLUMNS = ("model", "method", "label", "runs", "wall_hours", "cpu_hours", "max_rss_mb", "gpu_hours",
                "eval_wall_hours", "eval_cpu_hours", "eval_max_rss_mb", "tokens_generated", "median_step_s")
RATIOS = (("sdpo", "grpo"), ("sc_sdpo", "sdpo"))  # the cost table's ratio rows: numerator / denominator algorithm


def build_cost_table(index: pd.DataFrame, training: pd.DataFrame, out_prefix: str | Path | None = None) -> pd.DataFrame:
    """Measured cost per (model, method), summed over tasks and seeds, from each job's Snakemake benchmark file:
    training wall hours, CPU hours and peak resident memory (the largest over the runs; ``benchmark_path``),
    GPU hours (wall x ``gpus``), the same for the evaluation jobs (``eval_benchmark_path``), tokens generated in
    training rollouts, and the median logged step time. Then per model the ratio rows SDPO / GRPO and
    SC-SDPO / SDPO of every cost column, over the (task, seed) runs both methods have.

    Tokens: sum over steps of response_length/mean x questions_per_step x group_size.
    """
    rows = []
    trained = index[index["run_dir"].notna()]
    for _, run in trained.iterrows():
        steps = training[(training["model"] == run["model"]) & (training["task"] == run["task"])
                         & (training["method"] == run["method"]) & (training["seed"] == run["seed"])]
        steps = steps[steps[names.STEP] > 0]
        step_times = steps[names.STEP_TIME].dropna() if names.STEP_TIME in steps else pd.Series(dtype=float)
        if not isinstance(run.get("benchmark_path"), str):
            raise ValueError(f"run {run['model']}/{run['task']}/{run['method']}/seed{run['seed']}: no benchmark_path "
                             "(the cost table reads the Snakemake benchmark of its training job)")
        train = read_benchmark(run["benchmark_path"])
        evaluated = isinstance(run.get("eval_benchmark_path"), str) and isinstance(run.get("eval_dir"), str)
        evaluation = read_benchmark(run["eval_benchmark_path"]) if evaluated else \
            {"wall_s": math.nan, "cpu_s": math.nan, "max_rss_mb": math.nan}
        gpus = float(run.get("gpus", 0) if pd.notna(run.get("gpus", 0)) else 0)
        batch = float(run.get("questions_per_step", math.nan)) * float(run.get("group_size", math.nan))
        tokens = float((steps[names.RESPONSE_LENGTH] * batch).sum()) if names.RESPONSE_LENGTH in steps else math.nan
        rows.append({"model": run["model"], "task": run["task"], "seed": run["seed"], "method": run["method"],
                     "algorithm": run["algorithm"], "ablation": bool(run.get("ablation", False)),
                     "label": run["label"], "wall_s": train["wall_s"], "cpu_s": train["cpu_s"],
                     "max_rss_mb": train["max_rss_mb"], "gpu_s": train["wall_s"] * gpus,
                     "eval_wall_s": evaluation["wall_s"], "eval_cpu_s": evaluation["cpu_s"],
                     "eval_max_rss_mb": evaluation["max_rss_mb"], "tokens": tokens, "step_times": step_times.tolist()})
    if not rows:
        raise ValueError("no training runs for the cost table")
    per_run = pd.DataFrame(rows)
    table = _cost_rows(per_run)
    algorithms = dict(zip(trained["method"], trained["algorithm"], strict=False))
    table = _ordered(table, {m: ALGORITHM_ORDER.get(a, len(ALGORITHM_ORDER)) for m, a in algorithms.items()})
    ratios = []
    for model, runs in per_run[~per_run["ablation"]].groupby("model", sort=False):
        for top, bottom in RATIOS:
            a, b = runs[runs["algorithm"] == top], runs[runs["algorithm"] == bottom]
            common = set(zip(a["task"], a["seed"], strict=True)) & set(zip(b["task"], b["seed"], strict=True))
            if not common:
                continue
            pick = [part[[(t, s) in common for t, s in zip(part["task"], part["seed"], strict=True)]]
                    for part in (a, b)]
            num, den = (_cost_rows(p).iloc[0] for p in pick)
            ratio = {"model": model, "method": f"ratio_{top}_over_{bottom}",
                     "label": f"{num['label']} / {den['label']}", "runs": len(common)}
            for column in COST_COLUMNS[4:]:
                ratio[column] = num[column] / den[column] if den[column] else math.nan
            ratios.append(ratio)
    if ratios:
        table = pd.concat([table, pd.DataFrame(ratios)], ignore_index=True)
        model_rank = {m: i for i, m in enumerate(dict.fromkeys(table["model"]))}
        table = table.assign(_m=table["model"].map(model_rank)).sort_values("_m", kind="stable") \
            .drop(columns="_m").reset_index(drop=True)
    if out_prefix is not None:
        write_cost_table(table, out_prefix)
    return table[list(COST_COLUMNS)]


def _cost_rows(per_run: pd.DataFrame) -> pd.DataFrame:
    """Sum (time) and max (memory) over the runs of each (model, method)."""
    return per_run.groupby(["model", "method", "label"], sort=False).agg(
        runs=("wall_s", "size"), wall_hours=("wall_s", lambda s: s.sum() / 3600),
        cpu_hours=("cpu_s", lambda s: s.sum() / 3600), max_rss_mb=("max_rss_mb", "max"),
        gpu_hours=("gpu_s", lambda s: s.sum() / 3600),
        eval_wall_hours=("eval_wall_s", lambda s: s.sum(min_count=1) / 3600),
        eval_cpu_hours=("eval_cpu_s", lambda s: s.sum(min_count=1) / 3600),
        eval_max_rss_mb=("eval_max_rss_mb", "max"),
        tokens_generated=("tokens", "sum"),
        median_step_s=("step_times", _median_of_lists),
    ).reset_index()


def _median_of_lists(lists: pd.Series) -> float:
    values = [v for values in lists for v in values]
    return float(np.median(values)) if values else math.nan


# --------------------------------------------------------------------------------------------------- rendering


def _ordered(table: pd.DataFrame, rank: Mapping[str, int]) -> pd.DataFrame:
    """Rows by model, then by ``rank`` of the method (unranked last, in order of appearance)."""
    order = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.assign(_rank=order).sort_values(["model", "_rank"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


def format_cell(mean: float, half_width: float, *, std: float | None = None, percent: bool = True, digits: int = 1,
                plus_minus="±", signed: bool = False) -> str:
    """'80.9 ± 1.2 (sd 0.5)' (percent of an accuracy); the ± part is left out without an interval, the sd part
    without a standard deviation; NaN -> '–'. ``signed``: '+1.2' for a difference."""
    if mean is None or math.isnan(mean):
        return "–"
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:{'+' if signed else ''}.{digits}f}"
    if half_width is not None and not math.isnan(half_width):
        text += f" {plus_minus} {half_width * scale:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" (sd {std * scale:.{digits}f})"
    return text


def _seed_counts(counts: Sequence[int]) -> str:
    low, high = int(min(counts)), int(max(counts))
    if high == 0:
        return "–"  # published numbers
    return str(low) if low == high else f"{low}–{high}"


def column_name(benchmark: str, metric: str) -> str:
    """A wide table's column: '<benchmark> final mean@16' or '<benchmark> best mean@4 ≤ 4 steps'."""
    return f"{benchmark} {metric if is_budget_metric(metric) else 'final ' + display_metric(metric)}"


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
        text = format_cell(cell["mean"], cell["half_width"], std=cell.get("std"), plus_minus=plus_minus)
        if cell.get("budget_not_reached") is True or cell.get("budget_not_reached") == 1:
            text += NOT_REACHED_MARK
        rows.setdefault(key, {})[column_name(cell["benchmark"], cell["metric"])] = text
        seeds.setdefault(key, {}).setdefault(cell["benchmark"] == AVERAGE, []).append(int(cell["n_seeds"]))
    columns = [column_name(b, m) for b in benchmarks for m in metrics]
    # the row's seeds: over its benchmarks (its average cells only when it has nothing else, e.g. a published gain)
    frame = pd.DataFrame([{**dict(zip(row_keys, key, strict=True)),
                           SEEDS_COLUMN: _seed_counts(seeds[key].get(False) or seeds[key][True]), **values}
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
                  "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--", "≤": r"$\leq$", "†": r"$\dagger$"}


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
    table[list(COST_COLUMNS)].to_csv(out_prefix.with_suffix(".csv"), index=False)
    ratio = table["method"].str.startswith("ratio_")

    def shown(column: str, fmt: str) -> list[str]:
        return ["–" if v is None or (isinstance(v, float) and math.isnan(v)) else
                (f"{v:.2f}x" if is_ratio else format(v, fmt)) for v, is_ratio in zip(table[column], ratio, strict=True)]

    frame = pd.DataFrame({
        "model": table["model"], "method": table["label"], "runs": table["runs"].astype(int).astype(str),
        "wall h": shown("wall_hours", ".3f"), "CPU h": shown("cpu_hours", ".3f"),
        "peak MB": shown("max_rss_mb", ",.0f"), "GPU h": shown("gpu_hours", ".3f"),
        "eval wall h": shown("eval_wall_hours", ".3f"), "eval CPU h": shown("eval_cpu_hours", ".3f"),
        "eval peak MB": shown("eval_max_rss_mb", ",.0f"),
        "tokens generated": shown("tokens_generated", ",.0f"), "median step s": shown("median_step_s", ".2f"),
    })
    notes = ["Measured by Snakemake (each job's benchmark: file, results/benchmarks/): wall and CPU hours summed "
             "over the runs (tasks x seeds) of the training jobs, then of their evaluation jobs; peak MB: the largest "
             "resident memory of one job; GPU h: training wall x the GPUs the config gives a run. Snakemake samples "
             "CPU time and memory every second for 30 s, then every 30 s: a job's last seconds of CPU time and a "
             "short memory peak can be missed (negligible for hour-long jobs, not for the CPU configs' short ones, "
             "whose CPU hours are a lower bound). Tokens: generated in training rollouts; median step s: the logged "
             "timing_s/step. Ratio rows (x): the same columns divided, over the runs both methods have."]
    footer = "".join(f"\n{note}\n" for note in notes)
    out_prefix.with_suffix(".md").write_text("**Compute cost per method**\n\n" + to_markdown(frame) + footer)
    out_prefix.with_suffix(".tex").write_text(to_latex(frame, caption=" ".join(["Compute cost per method.", *notes])))
