"""The suite's 9 figures, one function each: data frames in, a matplotlib Figure out (PNG + PDF if asked).

Inputs are the frames of ``scsdpo_verl.analysis.runs``: ``training`` (training_frame), ``evals``
(eval_frame), ``questions`` (question_frame). Methods are found by algorithm (their keys are free labels):
by default a figure shows the main grid's methods, styled by algorithm (``style.styles_for``).

Across seeds, lines show the mean with a min-max band. Bars and points show the mean, every seed as a small
black dot, and a 95% t-interval only with at least ``FEW_SEEDS`` seeds (with 2 seeds, t = 12.7 makes the
interval meaningless), clipped to the quantity's range ([0, 1] for accuracies, [-1, 1] for differences).
Where two methods' curves coincide, the later one is drawn dashed with hollow markers over the first and the
panel says so.

  fig1_learnability         gradient scale vs pass rate: closed form, Monte Carlo, and the coefficients in runs
  fig2_training_curves      validation mean@k vs step and vs cumulative step time recorded by the trainer
  fig3_final_accuracy       final mean@k and maj@k per model x task x method
  fig4_curriculum           share of questions per pass-rate bin over training (heat map)
  fig5_weight_share         share of the total loss weight per pass-rate bin over training (stacked bars)
  fig6_stability            training reward, teacher-student divergence, gradient norm, entropy, response length
  fig7_ablation             final accuracy vs exponent, and vs normaliser
  fig8_gains_by_difficulty  accuracy change from the base model per base-model pass-rate bin
  fig9_paper_vs_this_run    published numbers beside this run's, with the difference (analysis.published)

Artists carry a ``gid`` naming what they show (``mean:<method>``, ``seeds:<method>``, ``interval:<method>``,
``band:<method>``, ``share:<k>``, ``no_weight``, ``note``, ``paper:<...>``, ``this_run:<...>``, ``difference:<...>``),
so tests read the plotted data back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.analysis.runs import ALGORITHMS, main_methods, metric_columns, step_bin_coefficients
from scsdpo_verl.analysis.stats import t_interval
from scsdpo_verl.analysis.style import (
    SEQUENTIAL_CMAP,
    SERIES_COLORS,
    MethodStyle,
    figure_style,
    method_style,
    panel_grid,
    save_figure,
    styles_for,
)
from scsdpo_verl.analysis.tables import display_metric, metric_pair
from scsdpo_verl.core import closed_form_scale, monte_carlo_scale

TRAINED_ALGORITHMS = ("grpo", "sdpo", "sc_sdpo")
LEARNABILITY_METHODS = {"grpo": "GRPO (raw)", "grpo_std": "GRPO (std-norm.)", "sdpo": "SDPO", "sc_sdpo": "SC-SDPO"}
# base-model pass-rate bins for figure 8 (the ends 0 and 1 are bins of their own)
DIFFICULTY_BINS = ("0", "(0, .25]", "(.25, .5]", "(.5, .75]", "(.75, 1)", "1")
FEW_SEEDS = 3  # fewer seeds than this: no interval, the seeds themselves are the error information
ACCURACY_RANGE = (0.0, 1.0)
DIFFERENCE_RANGE = (-1.0, 1.0)
STEP_TIME_LABEL = "cumulative step time (min)"


# --------------------------------------------------------------------------------------------------- helpers


def _finish(fig: Figure, out_prefix: str | Path | None) -> Figure:
    if out_prefix is not None:
        save_figure(fig, out_prefix)
    return fig


def _styles(frame: pd.DataFrame) -> dict[str, MethodStyle]:
    """Each method's style: the main grid's method of an algorithm looks like that algorithm, whatever its key."""
    labels = frame["label"] if "label" in frame else frame["method"]
    ablation = frame["ablation"] if "ablation" in frame else pd.Series(False, index=frame.index)
    return styles_for(
        (m, a, lab if isinstance(lab, str) else None, bool(ab))
        for m, a, lab, ab in zip(frame["method"], frame["algorithm"], labels, ablation, strict=True))


def _methods(frame: pd.DataFrame, methods: Sequence[str] | None, algorithms: Sequence[str]) -> list[str]:
    """``methods`` (keys) present in ``frame``, or by default the main grid's methods with ``algorithms``."""
    if methods is None:
        chosen = main_methods(frame, algorithms)
    else:
        present = set(frame["method"])
        chosen = [m for m in methods if m in present]
    if not chosen:
        raise ValueError(f"none of the methods {list(methods or algorithms)} is in the data "
                         f"(have {sorted(set(frame['method']))})")
    return chosen


def _pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(m, t) for m, t in zip(frame["model"], frame["task"], strict=True)})


def _method_legend(fig: Figure, methods: Sequence[str], styles: dict[str, MethodStyle], *,
                   patches: bool = False, seeds: bool = False) -> None:
    handles = []
    for m in methods:
        style = styles[m]
        if patches:
            handles.append(Patch(facecolor=style.color, label=style.label))
        else:
            handles.append(Line2D([], [], color=style.color, marker=style.marker, linestyle=style.linestyle,
                                  label=style.label))
    if seeds:
        handles.append(Line2D([], [], color="black", marker=".", linestyle="none", label="one seed"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5))


def _seed_band(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per x: mean, min and max of y over the runs (seeds) in ``frame``."""
    return frame.groupby(x)[y].agg(["mean", "min", "max"]).reset_index().sort_values(x)


def _coincides(a: pd.DataFrame, b: pd.DataFrame, x: str) -> bool:
    return (len(a) == len(b) and np.allclose(a[x].to_numpy(float), b[x].to_numpy(float))
            and np.allclose(a["mean"].to_numpy(float), b["mean"].to_numpy(float), equal_nan=True))


def _lines_with_bands(ax, bands: dict[str, pd.DataFrame], x: str, styles: dict[str, MethodStyle]) -> list[tuple]:
    """One mean line + min-max band per method. A curve equal to one drawn before it is drawn dashed with
    hollow, larger markers on top (both stay visible) and the panel names the pair; returns the pairs."""
    drawn: list[tuple[str, pd.DataFrame]] = []
    pairs = []
    for method, band in bands.items():
        style = styles[method]
        twin = next((m for m, other in drawn if _coincides(other, band, x)), None)
        kwargs = {"color": style.color, "linestyle": style.linestyle, "marker": style.marker,
                  "markevery": max(1, len(band) // 8), "label": style.label, "gid": f"mean:{method}"}
        if twin is not None:
            kwargs.update(linestyle=(0, (2, 2)), markerfacecolor="none", markersize=7, zorder=3)
            pairs.append((twin, method))
        ax.plot(band[x], band["mean"], **kwargs)
        ax.fill_between(band[x], band["min"], band["max"], color=style.color, alpha=0.2, linewidth=0,
                        gid=f"band:{method}")
        drawn.append((method, band))
    if pairs:
        text = "; ".join(f"{styles[a].label} = {styles[b].label}" for a, b in pairs)
        ax.text(0.02, 0.98, f"coincide: {text}", transform=ax.transAxes, ha="left", va="top", fontsize=7,
                color="0.25", gid="note")
    return pairs


@dataclass(frozen=True)
class SeedSummary:
    """Mean of per-seed values; the interval (clipped to the quantity's range) only with >= FEW_SEEDS seeds."""

    mean: float
    low: float  # NaN: no interval drawn
    high: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)


def seed_summary(values: Sequence[float], bounds: tuple[float, float]) -> SeedSummary:
    clean = tuple(float(v) for v in values if not (v is None or math.isnan(v)))
    interval = t_interval(list(clean))
    if len(clean) < FEW_SEEDS or math.isnan(interval.half_width):
        return SeedSummary(interval.mean, math.nan, math.nan, clean)
    return SeedSummary(interval.mean, max(bounds[0], interval.low), min(bounds[1], interval.high), clean)


def _draw_summaries(ax, x: Sequence[float], cells: Sequence[SeedSummary], color: str, method: str, *,
                    bar_width: float | None = None, marker: str = "o", linestyle: str = "-", label: str = "") -> None:
    """Bars (``bar_width``) or a line with markers at the means, the seeds as dots, clipped intervals."""
    means = [c.mean for c in cells]
    if bar_width is not None:
        ax.bar(x, means, bar_width, color=color, label=label, gid=f"mean:{method}")
    else:
        ax.plot(x, means, color=color, marker=marker, linestyle=linestyle, label=label, gid=f"mean:{method}")
    seeds_x = [xi for xi, c in zip(x, cells, strict=True) for _ in c.values]
    seeds_y = [v for c in cells for v in c.values]
    if seeds_y:
        ax.scatter(seeds_x, seeds_y, s=6, color="black", zorder=4, linewidths=0, gid=f"seeds:{method}")
    with_interval = [(xi, c) for xi, c in zip(x, cells, strict=True) if not math.isnan(c.low)]
    if with_interval:
        xs, cs = zip(*with_interval, strict=True)
        ax.vlines(xs, [c.low for c in cs], [c.high for c in cs], color="0.15", linewidth=0.9, zorder=3,
                  gid=f"interval:{method}")


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", gid="note")


# --------------------------------------------------------------------------------------------------- figure 1


def learnability_empirical(training: pd.DataFrame) -> pd.DataFrame:
    """Per (method, algorithm, p_hat): mean per-question loss coefficient in the runs = sum over steps of the
    bin's coefficient total / number of questions in the bin (see ``runs.bin_coefficients``)."""
    bins = step_bin_coefficients(training)
    if bins.empty:
        return bins
    keys = ["method", "label", "algorithm", "ablation", "p_hat"]
    grouped = bins.groupby(keys, as_index=False)[["coefficient", "questions"]].sum()
    grouped = grouped[grouped["questions"] > 0]
    grouped["scale"] = grouped["coefficient"] / grouped["questions"]
    return grouped


def fig1_learnability(training: pd.DataFrame | None = None, out_prefix: str | Path | None = None, *, n: int = 8,
                      exponent: float = 0.5, mc_pass_rates: Sequence[float] = (0.1, 0.25, 0.4, 0.6, 0.75, 0.9),
                      mc_groups: int = 1000) -> Figure:
    """(a) Expected per-question gradient scale vs pass rate p for GRPO raw/std, SDPO, SC-SDPO: closed form
    (lines, ``core.learnability``) and Monte Carlo through the core objectives (markers, ± 2 s.e.).
    (b) If ``training`` has pass-rate histograms: the mean per-question loss coefficient the runs applied,
    per observed pass rate p̂ = k/n (|advantage| for GRPO, the SC weight for SDPO/SC-SDPO)."""
    empirical = learnability_empirical(training) if training is not None and not training.empty else pd.DataFrame()
    with figure_style():
        fig, axes = panel_grid(1, 2 if not empirical.empty else 1, width=3.6, height=2.8)
        ax = axes[0, 0]
        grid = np.linspace(0, 1, 101)
        for method, label in LEARNABILITY_METHODS.items():
            style = method_style(method, label)
            curve = [closed_form_scale(method, float(p), n, exponent=exponent) for p in grid]
            ax.plot(grid, curve, color=style.color, linestyle=style.linestyle, label=style.label,
                    gid=f"theory:{method}")
            mc = [monte_carlo_scale(method, p, n, num_groups=mc_groups, exponent=exponent) for p in mc_pass_rates]
            # the scale is >= 0: the lower error bar stops at 0
            below, above = [min(m, 2 * s) for m, s in mc], [2 * s for _, s in mc]
            ax.errorbar(mc_pass_rates, [m for m, _ in mc], yerr=[below, above], color=style.color,
                        marker=style.marker, linestyle="none", capsize=2, gid=f"mc:{method}")
        ax.plot([], [], color="0.3", marker="o", linestyle="none", label="Monte Carlo (± 2 s.e.)")
        ax.set_xlabel("pass rate p")
        ax.set_ylabel("per-question gradient scale")
        ax.set_title(f"(a) theory, group size n = {n}")
        ax.legend(loc="upper left")
        if not empirical.empty:
            ax = axes[0, 1]
            styles = _styles(empirical)
            order = [*main_methods(empirical), *sorted(set(empirical["method"]) - set(main_methods(empirical)))]
            for method in order:
                rows = empirical[empirical["method"] == method].sort_values("p_hat")
                style = styles[method]
                ax.plot(rows["p_hat"], rows["scale"], color=style.color, linestyle=style.linestyle,
                        marker=style.marker, label=style.label, gid=f"mean:{method}")
            ax.set_xlabel("observed pass rate p̂ = k/n")
            ax.set_ylabel("mean loss coefficient per question")
            ax.set_title("(b) measured in the training runs")
            ax.legend(loc="upper left")
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 2


def validation_curves(training: pd.DataFrame) -> pd.DataFrame:
    """Rows with validation metrics: run columns, step, step_time_min (the trainer's recorded step times summed
    up to the step, validation excluded), val_mean (mean over the run's val-core/<source>/acc/mean@k columns)."""
    columns = metric_columns(training, names.VAL_MEAN_AT_K)
    if not columns:
        raise ValueError("no validation metrics (val-core/<source>/acc/mean@k) in the training logs")
    frames = []
    for _, run in training.groupby(list(names.RUN_KEYS), sort=False):
        run = run.sort_values(names.STEP).copy()
        step_time = run[names.STEP_TIME].fillna(0.0) if names.STEP_TIME in run else 0.0
        run["step_time_min"] = np.cumsum(step_time) / 60.0
        run["val_mean"] = run[columns].mean(axis=1, skipna=True)
        frames.append(run[run["val_mean"].notna()])
    return pd.concat(frames, ignore_index=True)


def fig2_training_curves(training: pd.DataFrame, out_prefix: str | Path | None = None, *,
                         methods: Sequence[str] | None = None) -> Figure:
    """Validation mean@k vs step (first row per model) and vs the cumulative step time the trainer recorded
    (second row; it depends on the machine and its load), one column per task; mean over seeds with a min-max
    band. On the time axis, each step's time is the mean over seeds."""
    curves = validation_curves(training)
    methods = _methods(curves, methods, TRAINED_ALGORITHMS)
    styles = _styles(curves)
    models, tasks = sorted(set(curves["model"])), sorted(set(curves["task"]))
    with figure_style():
        fig, axes = panel_grid(2 * len(models), len(tasks))
        for i, model in enumerate(models):
            for j, task in enumerate(tasks):
                panel = curves[(curves["model"] == model) & (curves["task"] == task)]
                for row, (x, xlabel) in enumerate(((names.STEP, "training step"), ("step_time_min", STEP_TIME_LABEL))):
                    ax = axes[2 * i + row, j]
                    bands = {}
                    for method in methods:
                        runs = panel[panel["method"] == method]
                        if runs.empty:
                            continue
                        band = _seed_band(runs, names.STEP, "val_mean")
                        if x == "step_time_min":  # seeds validate at different times: average on the step grid
                            times = runs.groupby(names.STEP)["step_time_min"].mean()
                            band["step_time_min"] = band[names.STEP].map(times)
                            band = band.sort_values("step_time_min")
                        bands[method] = band
                    _lines_with_bands(ax, bands, x, styles)
                    if panel.empty:
                        _no_data(ax)
                    ax.set_xlabel(xlabel)
                    ax.set_ylabel("validation mean@k")
                    ax.set_title(f"{model} / {task}")
        _method_legend(fig, methods, styles)
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 3


def fig3_final_accuracy(evals: pd.DataFrame, out_prefix: str | Path | None = None, *,
                        methods: Sequence[str] | None = None, k: int = 16, maj: str = "bootstrap") -> Figure:
    """Grouped bars: rows mean@k and maj@k, columns models; groups = tasks, bars = methods (mean over seeds,
    seeds as dots, 95% CI clipped to [0, 1] with at least FEW_SEEDS seeds)."""
    methods = _methods(evals, methods, ALGORITHMS)
    styles = _styles(evals)
    metrics = metric_pair(k, maj=maj)
    models, tasks = sorted(set(evals["model"])), sorted(set(evals["task"]))
    width = 0.8 / len(methods)
    with figure_style():
        fig, axes = panel_grid(len(metrics), len(models), width=max(3.2, 1.2 * len(tasks)))
        for i, metric in enumerate(metrics):
            for j, model in enumerate(models):
                ax = axes[i, j]
                for b, method in enumerate(methods):
                    cells = [seed_summary(evals[(evals["model"] == model) & (evals["task"] == task)
                                                & (evals["method"] == method)][metric].tolist(), ACCURACY_RANGE)
                             for task in tasks]
                    x = np.arange(len(tasks)) - 0.4 + width * (b + 0.5)
                    _draw_summaries(ax, x, cells, styles[method].color, method, bar_width=width,
                                    label=styles[method].label)
                ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
                ax.set_xlabel("task")
                ax.set_ylabel(f"accuracy ({display_metric(metric)})")
                ax.set_ylim(*ACCURACY_RANGE)
                ax.set_title(f"{model}: {display_metric(metric)}")
        _method_legend(fig, methods, styles, patches=True, seeds=True)
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figures 4, 5


def _bin_heat(ax, frame: pd.DataFrame, value: str, n: int, vmax: float | None = None):
    """A step x p̂ heat map of ``value`` (mean over seeds) from a step_bin_coefficients frame."""
    grid = frame.groupby(["step", "k"])[value].mean().unstack("k").reindex(columns=range(n + 1)).fillna(0.0)
    steps = grid.index.to_numpy(dtype=float)
    x_edges = np.concatenate([steps - 0.5, [steps[-1] + 0.5]])
    y_edges = (np.arange(n + 2) - 0.5) / n
    return ax.pcolormesh(x_edges, y_edges, grid.to_numpy().T, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=vmax,
                         gid=f"share:{value}")


def _bins_with_shares(training: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """step_bin_coefficients + question_share (of the step's questions) and weight_share (of the step's total
    loss weight, i.e. over the samples that have weight). weight_share is NaN where a run's step carries no
    weight at all (no sample with a teacher, or every SC weight 0): such a step has no shares, not zero shares."""
    bins = step_bin_coefficients(training)
    if bins.empty:
        raise ValueError("no pass-rate histograms (sc/pass_rate_hist/<k>) in the training logs")
    totals = bins.groupby([*names.RUN_KEYS, "step"])[["questions", "coefficient"]].transform("sum")
    bins["question_share"] = (bins["questions"] / totals["questions"].where(totals["questions"] > 0)).fillna(0.0)
    bins["weight_share"] = bins["coefficient"] / totals["coefficient"].where(totals["coefficient"] > 0)
    return bins, int(bins["k"].max())


def fig4_curriculum(training: pd.DataFrame, out_prefix: str | Path | None = None, *,
                    methods: Sequence[str] | None = None) -> Figure:
    """The implicit curriculum: per training step (x) the share of the step's questions whose group pass rate
    is p̂ = k/n (y), mean over seeds; rows model x task, columns methods."""
    bins, n = _bins_with_shares(training)
    methods = _methods(bins, methods, TRAINED_ALGORITHMS)
    styles = _styles(bins)
    pairs = _pairs(bins)
    with figure_style():
        fig, axes = panel_grid(len(pairs), len(methods), height=2.2)
        mesh = None
        for i, (model, task) in enumerate(pairs):
            for j, method in enumerate(methods):
                ax = axes[i, j]
                panel = bins[(bins["model"] == model) & (bins["task"] == task) & (bins["method"] == method)]
                if panel.empty:
                    _no_data(ax)
                else:
                    mesh = _bin_heat(ax, panel, "question_share", n, vmax=1.0)
                ax.grid(False)
                ax.set_xlabel("training step")
                ax.set_ylabel("pass rate p̂")
                ax.set_title(f"{styles[method].label}\n{model} / {task}", fontsize="medium")
        if mesh is not None:
            fig.colorbar(mesh, ax=axes, label="share of questions", shrink=0.8)
    return _finish(fig, out_prefix)


def weight_shares(training: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task, method, step, k): ``share`` = mean over the seeds whose step carries weight of the bin's
    share of that step's loss weight (NaN when no seed's step does), and ``seeds_with_weight``."""
    bins, _ = _bins_with_shares(training)
    keys = ["model", "task", "method", "label", "algorithm", "ablation", names.STEP, "k"]
    return bins.groupby(keys, as_index=False, dropna=False).agg(
        share=("weight_share", "mean"), seeds_with_weight=("weight_share", "count"))


def fig5_weight_share(training: pd.DataFrame, out_prefix: str | Path | None = None, *,
                      methods: Sequence[str] | None = None) -> Figure:
    """Where the weight goes: per step, the share of the step's total loss weight carried by questions with pass
    rate p̂ = k/n (stacked bars summing to 1; mean over the seeds whose step has any weight). Steps where no
    seed has a sample with weight are marked (hatched). Rows model x task, columns SDPO vs SC-SDPO."""
    shares = weight_shares(training)
    n = int(shares["k"].max())
    methods = _methods(shares, methods, ("sdpo", "sc_sdpo"))
    styles = _styles(shares)
    pairs = _pairs(shares)
    colors = plt.get_cmap(SEQUENTIAL_CMAP)(np.linspace(0, 1, n + 1))
    marked = False
    with figure_style():
        fig, axes = panel_grid(len(pairs), len(methods), height=2.2)
        for i, (model, task) in enumerate(pairs):
            for j, method in enumerate(methods):
                ax = axes[i, j]
                panel = shares[(shares["model"] == model) & (shares["task"] == task) & (shares["method"] == method)]
                if panel.empty:
                    _no_data(ax)
                else:
                    grid = panel.pivot(index=names.STEP, columns="k", values="share").reindex(columns=range(n + 1))
                    steps = grid.index.to_numpy(dtype=float)
                    empty = grid.isna().all(axis=1).to_numpy()
                    bottom = np.zeros(len(grid))
                    for k in range(n + 1):
                        height = grid[k].fillna(0.0).to_numpy()
                        ax.bar(steps[~empty], height[~empty], 0.9, bottom=bottom[~empty], color=colors[k],
                               linewidth=0, gid=f"share:{k}")
                        bottom += height
                    if empty.any():
                        marked = True
                        ax.bar(steps[empty], np.ones(int(empty.sum())), 0.9, color="none", edgecolor="0.6",
                               hatch="///", linewidth=0.5, gid="no_weight")
                ax.set_ylim(0, 1)
                ax.grid(False)
                ax.set_xlabel("training step")
                ax.set_ylabel("share of loss weight")
                ax.set_title(f"{styles[method].label}\n{model} / {task}", fontsize="medium")
        handles = [Patch(facecolor=colors[k], label=f"p̂ = {k}/{n}") for k in range(n + 1)]
        if marked:
            handles.append(Patch(facecolor="none", edgecolor="0.6", hatch="///", label="no sample with weight"))
        fig.legend(handles=handles, loc="outside right center", title="pass-rate bin")
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 6

# the reward first: a collapse shows there, and the other columns say what moved with it
STABILITY_METRICS = ((names.TRAIN_SCORE, "training reward (rollouts)"),
                     (names.TEACHER_DIVERGENCE, "teacher-student divergence"),
                     (names.GRAD_NORM, "gradient norm"), (names.ENTROPY, "policy entropy (nats)"),
                     (names.RESPONSE_LENGTH, "response length (tokens)"))


def fig6_stability(training: pd.DataFrame, out_prefix: str | Path | None = None, *,
                   methods: Sequence[str] | None = None) -> Figure:
    """Training reward (the rollouts' mean score), the SDPO family's teacher-student divergence (none for GRPO),
    gradient norm, policy entropy and response length vs step (columns), rows model x task; mean over seeds with a
    min-max band."""
    steps = training[training[names.STEP] > 0]
    methods = _methods(steps, methods, TRAINED_ALGORITHMS)
    styles = _styles(steps)
    pairs = _pairs(steps)
    with figure_style():
        fig, axes = panel_grid(len(pairs), len(STABILITY_METRICS))
        for i, (model, task) in enumerate(pairs):
            panel = steps[(steps["model"] == model) & (steps["task"] == task)]
            for j, (metric, ylabel) in enumerate(STABILITY_METRICS):
                ax = axes[i, j]
                bands = {}
                for method in methods:
                    runs = panel[panel["method"] == method]
                    if metric in runs and runs[metric].notna().any():
                        bands[method] = _seed_band(runs.dropna(subset=[metric]), names.STEP, metric)
                _lines_with_bands(ax, bands, names.STEP, styles)
                ax.set_xlabel("training step")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{model} / {task}")
        _method_legend(fig, methods, styles)
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 7


def fig7_ablation(evals: pd.DataFrame, out_prefix: str | Path | None = None, *, k: int = 16,
                  metric: str | None = None) -> Figure:
    """(a) Final accuracy vs the SC exponent (0 = SDPO, 0.5 = SC-SDPO, 1) with batch-mean normalisation;
    (b) final accuracy per normaliser at exponent 0.5. One series per model / task; mean over seeds, seeds as
    dots, 95% CI clipped to [0, 1] with at least FEW_SEEDS seeds. A panel with fewer than two settings run
    carries no comparison: it says so instead of drawing one point."""
    metric = metric or metric_pair(k)[0]
    family = evals[evals["algorithm"].isin(("sdpo", "sc_sdpo"))].copy()
    if family.empty:
        raise ValueError("no SDPO/SC-SDPO results for the ablation figure")
    family["normalize"] = family["normalize"].fillna("batch_mean")
    pairs = _pairs(family)
    by_exponent = family[(family["exponent"] == 0) | (family["normalize"] == "batch_mean")]
    at_half = family[family["exponent"] == 0.5]
    exponents = sorted(set(by_exponent["exponent"]))
    normalisers = sorted(set(at_half["normalize"]))
    with figure_style():
        fig, axes = panel_grid(1, 2, width=3.6, height=2.8)
        ax_exp, ax_norm = axes[0, 0], axes[0, 1]
        width = 0.8 / max(1, len(pairs))
        handles = []
        for s, (model, task) in enumerate(pairs):
            color = SERIES_COLORS[s % len(SERIES_COLORS)]
            label = f"{model} / {task}"
            series_id = f"{model}/{task}"
            series = by_exponent[(by_exponent["model"] == model) & (by_exponent["task"] == task)]
            shown = sorted(set(series["exponent"]))
            if len(exponents) >= 2:
                cells = [seed_summary(series[series["exponent"] == e][metric].tolist(), ACCURACY_RANGE) for e in shown]
                _draw_summaries(ax_exp, shown, cells, color, series_id, label=label)
            if len(normalisers) >= 2:
                series = at_half[(at_half["model"] == model) & (at_half["task"] == task)]
                cells = [seed_summary(series[series["normalize"] == v][metric].tolist(), ACCURACY_RANGE)
                         for v in normalisers]
                _draw_summaries(ax_norm, list(np.arange(len(normalisers)) - 0.4 + width * (s + 0.5)), cells, color,
                                series_id, bar_width=width, label=label)
            handles.append(Line2D([], [], color=color, marker="o", label=label))
        handles.append(Line2D([], [], color="black", marker=".", linestyle="none", label="one seed"))
        if len(exponents) < 2:
            _no_data(ax_exp, f"one exponent run ({', '.join(f'{e:g}' for e in exponents)}): nothing to compare")
        if len(normalisers) >= 2:
            ax_norm.set_xticks(np.arange(len(normalisers)), normalisers)
        else:
            ran = ", ".join(normalisers) or "none"
            _no_data(ax_norm, f"one normaliser run at exponent 0.5 ({ran}):\nnothing to compare")
            ax_norm.set_xticks([])
        ax_exp.set_xlabel("SC exponent (0 = SDPO, 0.5 = SC-SDPO)")
        ax_exp.set_ylabel(f"final accuracy ({display_metric(metric)})")
        ax_exp.set_title("(a) exponent, batch-mean normalisation")
        ax_norm.set_xlabel("normalisation of the SC weights")
        ax_norm.set_ylabel(f"final accuracy ({display_metric(metric)})")
        ax_norm.set_title("(b) normalisation, exponent 0.5")
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 8


def difficulty_bin(p: float) -> str:
    """The figure-8 bin label of a base-model pass rate p in [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"pass rate {p} outside [0, 1]")
    if p in (0.0, 1.0):
        return DIFFICULTY_BINS[0] if p == 0.0 else DIFFICULTY_BINS[-1]
    if p <= 0.25:
        return DIFFICULTY_BINS[1]
    if p <= 0.5:
        return DIFFICULTY_BINS[2]
    return DIFFICULTY_BINS[3] if p <= 0.75 else DIFFICULTY_BINS[4]


def base_difficulty(questions: pd.DataFrame, metric: str = names.QUESTION_MEAN) -> tuple[pd.Series, pd.Series, bool]:
    """Per base-model (model, task, question_id): the pass rate that picks its bin, the accuracy the gains are
    measured from, and whether the two come from disjoint samples.

    With metric mean and per-sample accuracies (``accs``, at least 2 per question) on every base row, the bin is
    the mean of the first half of each seed's samples and the reference the mean of the second half (each averaged
    over the base's seeds): given the question the halves are independent, so a bin's mean reference is an unbiased
    estimate of its questions' true accuracy. Binning by the same samples it subtracts would make the easy bins lose
    and the hard bins gain by regression to the mean alone. Otherwise both are the full metric (split False)."""
    base = questions[questions["method"] == "base"]
    if base.empty:
        raise ValueError("no base-model evaluation samples: the gains are measured from the base model")
    keys = ["model", "task", "question_id"]
    accs = base["accs"] if "accs" in base else pd.Series([None] * len(base), index=base.index)
    split = metric == names.QUESTION_MEAN and all(isinstance(a, tuple | list) and len(a) >= 2 for a in accs)
    if not split:
        return base.groupby(keys)[names.QUESTION_MEAN].mean(), base.groupby(keys)[metric].mean(), False
    halves = base[keys].copy()
    halves["bin_pass"] = [float(np.mean(a[: len(a) // 2])) for a in accs]
    halves["reference"] = [float(np.mean(a[len(a) // 2:])) for a in accs]
    grouped = halves.groupby(keys)
    return grouped["bin_pass"].mean(), grouped["reference"].mean(), True


def gains_by_difficulty(questions: pd.DataFrame, metric: str = names.QUESTION_MEAN) -> pd.DataFrame:
    """Per (model, task, method, bin): the per-run mean of (acc_q - base_q) over the bin's questions, with base_q
    and the bin from ``base_difficulty`` (disjoint halves of the base's samples where it can); ``gain`` is their
    mean over seeds, ``seed_gains`` the per-seed values, ``half_width`` the 95% t-interval's, ``split_base``
    whether bin and base_q come from disjoint samples, ``n_questions`` how many questions the bin holds."""
    bin_pass, base, split = base_difficulty(questions, metric)
    trained = questions[questions["method"] != "base"].copy()
    if trained.empty:
        raise ValueError("no trained-model evaluation samples: figure 8 compares trained models with the base")
    keys = list(zip(trained["model"], trained["task"], trained["question_id"], strict=True))
    trained["base"] = [base.get(key, math.nan) for key in keys]
    trained["bin"] = [difficulty_bin(bin_pass[key]) if key in bin_pass.index else None for key in keys]
    trained = trained.dropna(subset=["base", "bin"])
    trained["gain"] = trained[metric] - trained["base"]
    run_keys = ["model", "task", "method", "label", "algorithm", "ablation"]
    per_run = trained.groupby([*run_keys, "seed", "bin"], as_index=False, dropna=False).agg(
        gain=("gain", "mean"), n_questions=("question_id", "nunique"))
    rows = []
    for key, cell in per_run.groupby([*run_keys, "bin"], dropna=False):
        interval = t_interval(cell["gain"].tolist())
        rows.append({**dict(zip([*run_keys, "bin"], key, strict=True)), "gain": interval.mean,
                     "half_width": interval.half_width, "n_seeds": interval.n,
                     "seed_gains": tuple(cell.sort_values("seed")["gain"]),
                     "n_questions": int(cell["n_questions"].max()), "split_base": split})
    return pd.DataFrame(rows)


def fig8_gains_by_difficulty(questions: pd.DataFrame, out_prefix: str | Path | None = None, *,
                             methods: Sequence[str] | None = None, metric: str = names.QUESTION_MEAN) -> Figure:
    """Accuracy change from the base model per base-model pass-rate bin (x; binned and subtracted on disjoint
    halves of the base's samples where ``base_difficulty`` can), bars per method (mean over seeds, seeds as dots,
    95% CI clipped to [-1, 1] with at least FEW_SEEDS seeds); rows models, columns tasks."""
    gains = gains_by_difficulty(questions, metric)
    methods = _methods(gains, methods, TRAINED_ALGORITHMS)
    styles = _styles(gains)
    models, tasks = sorted(set(gains["model"])), sorted(set(gains["task"]))
    bin_labels = list(DIFFICULTY_BINS)
    width = 0.8 / len(methods)
    split = bool(len(gains)) and bool(gains["split_base"].all())
    x_label, y_label = (("base pass rate (1st half of its samples)", f"Δ accuracy ({metric}@k)\nvs the base's 2nd half")
                        if split else ("base-model pass rate on the question", f"Δ accuracy vs base ({metric}@k)"))
    with figure_style():
        fig, axes = panel_grid(len(models), len(tasks), width=3.8)
        for i, model in enumerate(models):
            for j, task in enumerate(tasks):
                ax = axes[i, j]
                panel = gains[(gains["model"] == model) & (gains["task"] == task)]
                for b, method in enumerate(methods):
                    cells = panel[panel["method"] == method].set_index("bin").reindex(bin_labels)
                    summaries = [seed_summary(list(v) if isinstance(v, tuple) else [], DIFFERENCE_RANGE)
                                 for v in cells["seed_gains"]]
                    x = list(np.arange(len(bin_labels)) - 0.4 + width * (b + 0.5))
                    _draw_summaries(ax, x, summaries, styles[method].color, method, bar_width=width,
                                    label=styles[method].label)
                ax.axhline(0.0, color="0.3", linewidth=0.8)
                counts = panel.groupby("bin")["n_questions"].max().reindex(bin_labels).fillna(0).astype(int)
                ax.set_xticks(np.arange(len(bin_labels)),
                              [f"{label}\nn={n}" for label, n in zip(bin_labels, counts, strict=True)], rotation=20)
                ax.set_xlabel(x_label)
                ax.set_ylabel(y_label)
                ax.set_title(f"{model} / {task}")
        _method_legend(fig, methods, styles, patches=True, seeds=True)
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- figure 9


def fig9_paper_vs_this_run(comparison: pd.DataFrame, out_prefix: str | Path | None = None) -> Figure:
    """Published numbers beside this run's (``tables.main_table_comparison``): one row of panels per model, one
    panel per column of this run compared with (the final checkpoint, each budget) and one for the gains over
    SDPO; per benchmark and method a hatched bar (paper; a primary source where there is one) next to a filled
    one (this run, mean over seeds, 95% interval with >= FEW_SEEDS seeds), and the difference this run − paper
    written above the pair. Without published numbers mapped onto the config the figure says so."""
    from scsdpo_verl.analysis.published import DELTA, paper_rows

    chosen = pd.DataFrame(paper_rows(comparison)) if not comparison.empty else pd.DataFrame()
    with figure_style():
        if chosen.empty:
            fig, axes = panel_grid(1, 1, width=5.0, height=2.0)
            _no_data(axes[0, 0], "no published numbers are mapped onto this config's models and tasks\n"
                                 "(reporting.published in the workflow config)")
            axes[0, 0].set_axis_off()
            return _finish(fig, out_prefix)
        rows = comparison[comparison["compared_with"] != ""]
        rows = rows.sort_values("secondary", kind="stable").drop_duplicates(
            ["model", "algorithm", "benchmark", "compared_with"], keep="first")
        rows = rows.assign(panel=np.where(rows["algorithm"] == DELTA, "gain over SDPO", rows["compared_with"]))
        models = list(dict.fromkeys(rows["model"]))
        panels = [p for p in dict.fromkeys(rows["panel"]) if p != "gain over SDPO"]
        panels += ["gain over SDPO"] if (rows["panel"] == "gain over SDPO").any() else []
        algorithms = [a for a in ("base", "grpo", "sdpo", "sc_sdpo", DELTA) if a in set(rows["algorithm"])]
        colors = {a: method_style("sc_sdpo" if a == DELTA else a).color for a in algorithms}
        fig, axes = panel_grid(len(models), len(panels), width=4.2, height=2.8)
        for i, model in enumerate(models):
            for j, panel in enumerate(panels):
                ax = axes[i, j]
                part = rows[(rows["model"] == model) & (rows["panel"] == panel)]
                benchmarks = [b for b in dict.fromkeys(part["benchmark"]) if b != "average"]
                benchmarks += ["average"] if "average" in set(part["benchmark"]) else []
                present = [a for a in algorithms if a in set(part["algorithm"])]
                width = 0.8 / max(1, 2 * len(present))
                heights = [0.0, *(100 * part["paper"]), *(100 * part["this_run"].dropna())]
                for b, algorithm in enumerate(present):
                    for t, benchmark in enumerate(benchmarks):
                        cell = part[(part["algorithm"] == algorithm) & (part["benchmark"] == benchmark)]
                        if cell.empty:
                            continue
                        cell = cell.iloc[0]
                        x = t - 0.4 + width * (2 * b + 0.5)
                        tag = f"{model}/{panel}/{algorithm}/{benchmark}"
                        ax.bar(x, 100 * cell["paper"], width, facecolor="white", edgecolor=colors[algorithm],
                               hatch="///", gid=f"paper:{tag}")
                        ax.bar(x + width, 100 * cell["this_run"] if not math.isnan(cell["this_run"]) else 0.0, width,
                               color=colors[algorithm], gid=f"this_run:{tag}")
                        if cell["n_seeds"] >= FEW_SEEDS and not math.isnan(cell["half_width"]):
                            ax.vlines(x + width, 100 * (cell["this_run"] - cell["half_width"]),
                                      100 * (cell["this_run"] + cell["half_width"]), color="0.15", linewidth=0.9,
                                      gid=f"interval:{tag}")
                        if not math.isnan(cell["difference"]):
                            top = 100 * max(cell["paper"], cell["this_run"], 0.0)
                            ax.text(x + width / 2, top, f"{100 * cell['difference']:+.1f}", ha="center",
                                    va="bottom", fontsize=6, rotation=90, gid=f"difference:{tag}")
                ax.axhline(0.0, color="0.3", linewidth=0.8)
                span = max(heights) - min(heights) or 1.0
                ax.set_ylim(min(heights) - 0.05 * span, max(heights) + 0.3 * span)  # room for the differences
                labels = [part[part["benchmark"] == b]["published_benchmark"].iloc[0] for b in benchmarks]
                ax.set_xticks(np.arange(len(benchmarks)), labels, rotation=20)
                ax.set_ylabel("gain (points)" if panel == "gain over SDPO" else "accuracy (%)")
                ax.set_title(f"{model}: {display_metric(panel) if panel.startswith(('mean', 'maj')) else panel}")
        handles = [Patch(facecolor=colors[a], label=rows[rows["algorithm"] == a]["label"].iloc[0]) for a in algorithms]
        handles += [Patch(facecolor="white", edgecolor="0.3", hatch="///", label="paper (hatched)"),
                    Line2D([], [], color="none", label="number: this run − paper")]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    return _finish(fig, out_prefix)


# --------------------------------------------------------------------------------------------------- all


FIGURES = ("fig1_learnability", "fig2_training_curves", "fig3_final_accuracy", "fig4_curriculum",
           "fig5_weight_share", "fig6_stability", "fig7_ablation", "fig8_gains_by_difficulty", "fig9_paper_vs_this_run")


def make_all_figures(training: pd.DataFrame, evals: pd.DataFrame, questions: pd.DataFrame,
                     out_dir: str | Path, comparison: pd.DataFrame | None = None) -> dict[str, Path]:
    """Render the 9 figures into ``out_dir/<name>.png|pdf``; returns name -> PNG path. ``comparison``: the
    published numbers beside this run's (tables.main_table_comparison; None or empty: figure 9 says none)."""
    out_dir = Path(out_dir)
    k = int(evals["k"].dropna().iloc[0]) if "k" in evals and evals["k"].notna().any() else 16
    calls = {
        "fig1_learnability": lambda p: fig1_learnability(training, p),
        "fig2_training_curves": lambda p: fig2_training_curves(training, p),
        "fig3_final_accuracy": lambda p: fig3_final_accuracy(evals, p, k=k),
        "fig4_curriculum": lambda p: fig4_curriculum(training, p),
        "fig5_weight_share": lambda p: fig5_weight_share(training, p),
        "fig6_stability": lambda p: fig6_stability(training, p),
        "fig7_ablation": lambda p: fig7_ablation(evals, p, k=k),
        "fig8_gains_by_difficulty": lambda p: fig8_gains_by_difficulty(questions, p),
        "fig9_paper_vs_this_run": lambda p: fig9_paper_vs_this_run(
            comparison if comparison is not None else pd.DataFrame(), p),
    }
    written = {}
    for name in FIGURES:
        fig = calls[name](out_dir / name)
        plt.close(fig)
        written[name] = out_dir / f"{name}.png"
    return written
