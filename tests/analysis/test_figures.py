"""Each figure's plotted data, read back from its artists, against values worked out here from the fixture's
definitions (conftest.py) or from small hand-made frames: never from the analysis functions under test.

The expected loss coefficients are written out with plain arithmetic (who has a teacher, sqrt(p(1 - p)), the
normalisers), not with scsdpo_verl.core.
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from scsdpo_verl.analysis import figures as F
from scsdpo_verl.analysis.style import METHOD_STYLES, OKABE_ITO, method_style, styles_for

from .conftest import EVAL_VALUES, HISTOGRAMS, QUESTION_BASE, N, gain_of, val_at

matplotlib.use("Agg")

T2 = 4.302652729911275  # t_{0.975, 2}: three seeds


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------------- reading back


def panels(fig):
    """Data axes (colour bars excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def line(ax, gid: str):
    found = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} lines"
    return found[0]


def bars(ax, gid: str) -> list:
    return [p for p in ax.patches if p.get_gid() == gid]


def bar_heights(ax, gid: str) -> dict[float, float]:
    """x centre -> height of the bars with ``gid``."""
    return {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for p in bars(ax, gid)}


def seed_points(ax, gid: str) -> list[tuple[float, float]]:
    found = [c for c in ax.collections if c.get_gid() == gid]
    if not found:
        return []
    return sorted((round(float(x), 6), round(float(y), 6)) for x, y in found[0].get_offsets())


def intervals(ax, gid: str) -> list[tuple[float, float, float]]:
    """(x, low, high) of the vertical interval segments with ``gid``."""
    found = [c for c in ax.collections if c.get_gid() == gid]
    if not found:
        return []
    return sorted((seg[0][0], min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])) for seg in found[0].get_segments())


def band_limits(ax, gid: str) -> tuple[np.ndarray, np.ndarray]:
    """The (lower, upper) y of a fill_between band, in x order."""
    (band,) = [c for c in ax.collections if c.get_gid() == gid]
    vertices = band.get_paths()[0].vertices
    xs = np.unique(vertices[:, 0])
    lower = np.array([vertices[vertices[:, 0] == x, 1].min() for x in xs])
    upper = np.array([vertices[vertices[:, 0] == x, 1].max() for x in xs])
    return lower, upper


def notes(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == "note"]


# --------------------------------------------------------------------------------------------------- hand-worked


def has_teacher(k: int, n: int) -> int:
    """Samples of a group with k successes of n that have a successful sibling other than themselves."""
    if k == 0:
        return 0
    return n - 1 if k == 1 else n


def raw_sc_weight(k: int, n: int, exponent: float) -> float:
    p = k / n
    return 1.0 if exponent == 0 else (p * (1 - p)) ** exponent


def per_question_coefficient(hist, n: int, algorithm: str, exponent: float = 0.5,
                             normalize: str = "batch_mean") -> list[float]:
    """The loss coefficient summed over one question's samples, per k, for one step with histogram ``hist``."""
    if algorithm == "grpo":  # sum_i |r_i - k/n| = k (1 - k/n) + (n - k) k/n
        return [2 * k * (n - k) / n for k in range(n + 1)]
    exponent = 0.0 if algorithm == "sdpo" else exponent
    active = [(has_teacher(k, n), raw_sc_weight(k, n, exponent)) for k in range(n + 1)]
    raw_total = sum(c * a * r for c, (a, r) in zip(hist, active, strict=True))
    actives = sum(c * a for c, (a, _) in zip(hist, active, strict=True))
    largest = max((r for c, (a, r) in zip(hist, active, strict=True) if c and a), default=0.0)
    z = {"batch_mean": raw_total / actives if actives else 0.0, "batch_max": largest, "batch_sum": raw_total,
         "none": 1.0}[normalize]
    return [a * r / z if z > 0 else 0.0 for a, r in active]


def scale_by_bin(algorithm: str, exponent: float = 0.5, normalize: str = "batch_mean") -> dict[float, float]:
    """Figure 1(b): sum over the fixture's steps of the bin's coefficients / the bin's questions, per p̂."""
    coefficient, questions = [0.0] * (N + 1), [0.0] * (N + 1)
    for hist in HISTOGRAMS:
        per_question = per_question_coefficient(hist, N, algorithm, exponent, normalize)
        for k in range(N + 1):
            coefficient[k] += hist[k] * per_question[k]
            questions[k] += hist[k]
    return {k / N: coefficient[k] / questions[k] for k in range(N + 1) if questions[k]}


# --------------------------------------------------------------------------------------------------- figure 1


def test_fig1_theory_lines_and_measured_coefficients(training):
    fig = F.fig1_learnability(training, mc_groups=200, mc_pass_rates=(0.25, 0.75))
    theory, measured = panels(fig)
    assert theory.get_xlabel() == "pass rate p" and theory.get_ylabel() == "per-question gradient scale"
    assert legend_texts(theory.get_legend()) == ["GRPO (raw)", "GRPO (std-norm.)", "SDPO", "SC-SDPO",
                                                 "Monte Carlo (± 2 s.e.)"]
    n = 8
    grpo, sdpo = line(theory, "theory:grpo"), line(theory, "theory:sdpo")
    p = np.asarray(grpo.get_xdata())
    np.testing.assert_allclose(grpo.get_ydata(), p * (1 - p) * (n - 1) / n, atol=1e-12)
    np.testing.assert_allclose(sdpo.get_ydata(), 1 - (1 - p) ** (n - 1), atol=1e-12)

    assert measured.get_xlabel() == "observed pass rate p̂ = k/n"
    assert legend_texts(measured.get_legend()) == ["GRPO", "SDPO", "SC-SDPO", "exp 1", "max norm"]
    for method, expected in [("grpo", scale_by_bin("grpo")), ("sdpo", scale_by_bin("sdpo")),
                             ("sc_sdpo", scale_by_bin("sc_sdpo")),
                             ("sc_sdpo_exp1", scale_by_bin("sc_sdpo", exponent=1.0)),
                             ("sc_sdpo_max", scale_by_bin("sc_sdpo", normalize="batch_max"))]:
        drawn = line(measured, f"mean:{method}")
        assert list(drawn.get_xdata()) == list(expected), method
        assert list(drawn.get_ydata()) == pytest.approx(list(expected.values())), method
    assert len(panels(F.fig1_learnability(None, mc_groups=50, mc_pass_rates=(0.5,)))) == 1  # theory only


def test_fig1_monte_carlo_error_bars_stay_at_or_above_zero():
    # 10 groups at p = 0.02: every estimate is within 2 standard errors of 0, so the raw bars would cross it
    fig = F.fig1_learnability(None, mc_groups=10, mc_pass_rates=(0.02,))
    (theory,) = panels(fig)
    lows = [min(y for seg in segments.get_segments() for _, y in seg)
            for container in theory.containers for segments in container.lines[2]]
    assert len(lows) == 4 and min(lows) == 0.0


# --------------------------------------------------------------------------------------------------- figure 2


def test_fig2_curves_bands_and_step_time(training):
    fig = F.fig2_training_curves(training)
    axes = panels(fig)
    assert len(axes) == 4  # (step, step time) rows x tasks sci, tool
    assert [ax.get_xlabel() for ax in axes] == ["training step", "training step", "cumulative step time (min)",
                                                "cumulative step time (min)"]
    assert all(ax.get_ylabel() == "validation mean@k" for ax in axes)
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]
    steps = [0, 3, 6]
    for method in ("grpo", "sdpo", "sc_sdpo"):
        drawn = line(axes[0], f"mean:{method}")  # sci, vs step: mean over seeds 0 and 1
        assert list(drawn.get_xdata()) == steps
        assert list(drawn.get_ydata()) == pytest.approx([(val_at(s, method, 0) + val_at(s, method, 1)) / 2
                                                         for s in steps])
        lower, upper = band_limits(axes[0], f"band:{method}")
        assert list(lower) == pytest.approx([val_at(s, method, 0) for s in steps])
        assert list(upper) == pytest.approx([val_at(s, method, 1) for s in steps])
    # the time axis: seeds take 2 s and 3 s a step -> the mean over seeds of the cumulative time, in minutes
    assert list(line(axes[2], "mean:grpo").get_xdata()) == pytest.approx([s * 2.5 / 60 for s in steps])


def test_fig2_coinciding_curves_stay_visible_and_are_named(training):
    fig = F.fig2_training_curves(training)
    ax = panels(fig)[0]
    grpo, sdpo, sc = (line(ax, f"mean:{m}") for m in ("grpo", "sdpo", "sc_sdpo"))
    # GRPO and SDPO have the same validation curve in the fixture: SDPO goes on top, dashed, hollow markers
    assert list(grpo.get_ydata()) == list(sdpo.get_ydata())
    assert sdpo.get_linestyle() != grpo.get_linestyle() and sdpo.get_markerfacecolor() == "none"
    assert sdpo.get_zorder() > grpo.get_zorder()
    assert sc.get_markerfacecolor() != "none"  # SC-SDPO differs: its normal style
    assert notes(ax) == ["coincide: GRPO = SDPO"]


# --------------------------------------------------------------------------------------------------- figure 3


def test_fig3_bars_are_seed_means_and_dots_are_the_seeds(evals):
    fig = F.fig3_final_accuracy(evals)
    mean_ax, maj_ax = panels(fig)
    assert [mean_ax.get_ylabel(), maj_ax.get_ylabel()] == ["accuracy (mean@16)", "accuracy (maj@16)"]
    assert legend_texts(fig.legends[0]) == ["Base", "GRPO", "SDPO", "SC-SDPO", "one seed"]
    for ax, offset in ((mean_ax, 0.0), (maj_ax, 0.02)):  # the maj@16 row is the bootstrap one: mean@16 + 0.02
        for method in ("base", "grpo", "sdpo", "sc_sdpo"):
            heights = [p.get_height() for p in sorted(bars(ax, f"mean:{method}"), key=lambda p: p.get_x())]
            expected = [np.mean(list(EVAL_VALUES[(task, method)].values())) + offset for task in ("sci", "tool")]
            assert heights == pytest.approx(expected), (method, offset)
            dots = sorted(y for _, y in seed_points(ax, f"seeds:{method}"))
            assert dots == pytest.approx(sorted(v + offset for task in ("sci", "tool")
                                                for v in EVAL_VALUES[(task, method)].values()))
            assert intervals(ax, f"interval:{method}") == []  # 1 or 2 seeds: no interval
    assert mean_ax.get_ylim() == (0.0, 1.0)


def _three_seed_evals(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model": "m", "task": "t", "method": "grpo", "algorithm": "grpo", "label": "GRPO",
                         "ablation": False, "seed": [0, 1, 2], "mean@16": values,
                         "maj@16_bootstrap": values, "k": 16})


def test_fig3_intervals_with_three_seeds_are_clipped_to_zero_one():
    values = [0.0, 0.0, 0.3]
    mean, sd = 0.1, math.sqrt(((0.1) ** 2 * 2 + 0.2**2) / 2)
    half = T2 * sd / math.sqrt(3)
    assert mean - half < 0  # the raw interval would leave [0, 1]
    ax = panels(F.fig3_final_accuracy(_three_seed_evals(values)))[0]
    ((_, low, high),) = intervals(ax, "interval:grpo")
    assert low == 0.0 and high == pytest.approx(mean + half)
    ((_, low, high),) = intervals(panels(F.fig3_final_accuracy(_three_seed_evals([1.0, 1.0, 0.7])))[0],
                                  "interval:grpo")
    assert high == 1.0 and low == pytest.approx(0.9 - half)


# --------------------------------------------------------------------------------------------------- figure 4


def test_fig4_question_shares_are_the_histograms(training):
    fig = F.fig4_curriculum(training)
    axes = panels(fig)
    assert len(axes) == 6 and len(fig.axes) == 7  # (sci, tool) x (GRPO, SDPO, SC-SDPO) + the colour bar
    assert {ax.get_ylabel() for ax in axes} == {"pass rate p̂"}
    assert [ax.get_title() for ax in axes[:3]] == ["GRPO\ntiny / sci", "SDPO\ntiny / sci", "SC-SDPO\ntiny / sci"]
    expected = np.array(HISTOGRAMS, dtype=float).T / 4  # [k, step]: share of the step's 4 questions
    for ax in axes:
        (mesh,) = [c for c in ax.collections if c.get_gid() == "share:question_share"]
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(N + 1, len(HISTOGRAMS)), expected)


# --------------------------------------------------------------------------------------------------- figure 5

# hand-made logs, n = 4: per seed, per step, the histogram of successes (questions with k = 0..4 successes)
FIG5_HISTOGRAMS = {
    0: {1: [1, 1, 1, 1, 0], 2: [4, 0, 0, 0, 0], 3: [4, 0, 0, 0, 0]},  # steps 2, 3: no success, no teacher
    1: {1: [0, 0, 2, 0, 2], 2: [0, 1, 1, 1, 1], 3: [2, 0, 0, 0, 2]},  # step 3: only p̂ = 1 has a teacher
}


def _fig5_training() -> pd.DataFrame:
    rows = []
    # the SC-SDPO method under a free key: the figure finds it by its algorithm
    for method, algorithm, exponent in (("sdpo", "sdpo", 0.0), ("scsdpo", "sc_sdpo", 0.5)):
        for seed, steps in FIG5_HISTOGRAMS.items():
            for step, hist in steps.items():
                rows.append({"model": "m", "task": "tool", "method": method, "algorithm": algorithm, "label": None,
                             "exponent": exponent, "normalize": "batch_mean", "seed": seed, "ablation": False,
                             "step": step, **{f"sc/pass_rate_hist/{k}": float(c) for k, c in enumerate(hist)}})
    return pd.DataFrame(rows)


def _shares(hist, algorithm: str) -> list[float] | None:
    """A step's share of the loss weight per bin: questions x samples with a teacher x raw weight, normalised
    over the samples that have weight (the normaliser Z cancels); None when no sample has weight."""
    exponent = 0.0 if algorithm == "sdpo" else 0.5
    weight = [c * has_teacher(k, N) * raw_sc_weight(k, N, exponent) for k, c in enumerate(hist)]
    total = sum(weight)
    return [w / total for w in weight] if total > 0 else None


def test_fig5_shares_of_the_weight_sum_to_one_and_steps_without_weight_are_marked():
    fig = F.fig5_weight_share(_fig5_training())
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["SDPO\nm / tool", "SC-SDPO\nm / tool"]
    for ax, algorithm in zip(axes, ("sdpo", "sc_sdpo"), strict=True):
        expected, marked = {}, []
        for step in (1, 2, 3):
            per_seed = [s for s in (_shares(FIG5_HISTOGRAMS[seed][step], algorithm) for seed in (0, 1)) if s]
            if per_seed:  # the mean over the seeds whose step carries weight
                expected[step] = [sum(s[k] for s in per_seed) / len(per_seed) for k in range(N + 1)]
            else:
                marked.append(step)
        heights = {k: bar_heights(ax, f"share:{k}") for k in range(N + 1)}
        for step, shares in expected.items():
            assert [heights[k][step] for k in range(N + 1)] == pytest.approx(shares), (algorithm, step)
            assert sum(heights[k][step] for k in range(N + 1)) == pytest.approx(1.0)
        # stacked: each bin starts where the bins below it end
        for step in expected:
            bottoms = {k: next(p.get_y() for p in bars(ax, f"share:{k}") if p.get_x() + p.get_width() / 2 == step)
                       for k in range(N + 1)}
            assert [bottoms[k] for k in range(N + 1)] == pytest.approx(np.cumsum([0, *expected[step][:-1]]))
        assert sorted(bar_heights(ax, "no_weight")) == marked
    # the hand-worked cases: SDPO has weight at every step (p̂ = 1 has a teacher), SC-SDPO none at step 3
    assert sorted(bar_heights(axes[0], "no_weight")) == [] and sorted(bar_heights(axes[1], "no_weight")) == [3]
    assert legend_texts(fig.legends[0])[-1] == "no sample with weight"


def test_fig5_on_the_fixture_logs(training):
    fig = F.fig5_weight_share(training)
    axes = panels(fig)
    assert len(axes) == 4 and [ax.get_title() for ax in axes[:2]] == ["SDPO\ntiny / sci", "SC-SDPO\ntiny / sci"]
    assert legend_texts(fig.legends[0]) == [f"p̂ = {k}/4" for k in range(5)]
    for step, hist in enumerate(HISTOGRAMS, start=1):
        assert bar_heights(axes[1], "share:2")[step] == pytest.approx(_shares(hist, "sc_sdpo")[2])


# --------------------------------------------------------------------------------------------------- figure 6


def test_fig6_lines_and_bands(training):
    fig = F.fig6_stability(training)
    axes = panels(fig)
    assert len(axes) == 10
    assert [ax.get_ylabel() for ax in axes[:5]] == ["training reward (rollouts)", "teacher-student divergence",
                                                    "gradient norm", "policy entropy (nats)",
                                                    "response length (tokens)"]
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]
    steps = range(1, 7)
    assert list(line(axes[0], "mean:grpo").get_ydata()) == pytest.approx([0.5] * 6)
    # the divergence: SDPO and SC-SDPO only (GRPO has no teacher)
    assert list(line(axes[1], "mean:sc_sdpo").get_ydata()) == pytest.approx([0.01 * s + 0.005 for s in steps])
    assert list(line(axes[1], "mean:sdpo").get_ydata()) == pytest.approx([0.01 * s for s in steps])
    assert "mean:grpo" not in {artist.get_gid() for artist in axes[1].get_lines()}
    assert list(line(axes[2], "mean:grpo").get_ydata()) == pytest.approx([1.0 + 0.1 * s for s in steps])
    assert list(line(axes[3], "mean:sdpo").get_ydata()) == pytest.approx([2.0 - 0.1 * s for s in steps])
    # response length 10 + step + seed: mean over seeds 0, 1 and the min-max band
    assert list(line(axes[4], "mean:sc_sdpo").get_ydata()) == pytest.approx([10.5 + s for s in steps])
    lower, upper = band_limits(axes[4], "band:sc_sdpo")
    assert list(lower) == pytest.approx([10.0 + s for s in steps]) and list(upper) == pytest.approx([11.0 + s
                                                                                                   for s in steps])
    # the three methods log the same numbers: both later curves are drawn visibly over the first and named
    assert notes(axes[2]) == ["coincide: GRPO = SDPO; GRPO = SC-SDPO"]
    assert line(axes[2], "mean:sc_sdpo").get_markerfacecolor() == "none"


# --------------------------------------------------------------------------------------------------- figure 7


def _mean(task: str, method: str) -> float:
    return float(np.mean(list(EVAL_VALUES[(task, method)].values())))


def test_fig7_accuracy_by_exponent_and_by_normaliser(evals):
    fig = F.fig7_ablation(evals)
    by_exponent, by_normaliser = panels(fig)
    assert by_exponent.get_xlabel() == "SC exponent (0 = SDPO, 0.5 = SC-SDPO)"
    assert by_normaliser.get_xlabel() == "normalisation of the SC weights"
    assert legend_texts(fig.legends[0]) == ["tiny / sci", "tiny / tool", "one seed"]
    sci = line(by_exponent, "mean:tiny/sci")
    assert list(sci.get_xdata()) == [0.0, 0.5, 1.0]
    assert list(sci.get_ydata()) == pytest.approx([_mean("sci", "sdpo"), _mean("sci", "sc_sdpo"),
                                                   _mean("sci", "sc_sdpo_exp1")])
    tool = line(by_exponent, "mean:tiny/tool")
    assert list(tool.get_ydata()) == pytest.approx([_mean("tool", "sdpo"), _mean("tool", "sc_sdpo")])
    assert sorted(y for _, y in seed_points(by_exponent, "seeds:tiny/sci")) == pytest.approx(sorted(
        v for m in ("sdpo", "sc_sdpo", "sc_sdpo_exp1") for v in EVAL_VALUES[("sci", m)].values()))
    assert [t.get_text() for t in by_normaliser.get_xticklabels()] == ["batch_max", "batch_mean"]
    heights = sorted(bar_heights(by_normaliser, "mean:tiny/sci").items())
    assert [h for _, h in heights] == pytest.approx([_mean("sci", "sc_sdpo_max"), _mean("sci", "sc_sdpo")])
    tool_bars = [h for _, h in sorted(bar_heights(by_normaliser, "mean:tiny/tool").items())]
    assert math.isnan(tool_bars[0]) and tool_bars[1] == pytest.approx(_mean("tool", "sc_sdpo"))
    assert notes(by_exponent) == notes(by_normaliser) == []


def test_fig7_panel_without_a_comparison_says_so(evals):
    one_normaliser = evals[evals["method"] != "sc_sdpo_max"]
    _, by_normaliser = panels(F.fig7_ablation(one_normaliser))
    assert len(by_normaliser.patches) == 0 and len(by_normaliser.get_lines()) == 0
    assert notes(by_normaliser) == ["one normaliser run at exponent 0.5 (batch_mean):\nnothing to compare"]


def test_fig7_intervals_with_three_seeds_stay_in_zero_one():
    frame = pd.DataFrame({"model": "m", "task": "t", "method": ["sdpo"] * 3 + ["sc"] * 3,
                          "algorithm": ["sdpo"] * 3 + ["sc_sdpo"] * 3, "label": None, "ablation": False,
                          "exponent": [0.0] * 3 + [0.5] * 3, "normalize": "batch_mean", "seed": [0, 1, 2] * 2,
                          "mean@16": [0.0, 0.0, 0.3, 1.0, 1.0, 0.7]})
    by_exponent, _ = panels(F.fig7_ablation(frame))
    segments = intervals(by_exponent, "interval:m/t")
    assert segments[0][:2] == (0.0, 0.0)  # clipped at 0
    assert segments[1][0] == 0.5 and segments[1][2] == 1.0  # clipped at 1
    assert by_exponent.get_ylim()[0] >= -0.05 and by_exponent.get_ylim()[1] <= 1.05


# --------------------------------------------------------------------------------------------------- figure 8


def expected_gain(method: str, seed: int, base: float) -> float:
    return min(1.0, base + gain_of(method, seed)) - base


def test_fig8_gains_per_difficulty_bin(questions):
    fig = F.fig8_gains_by_difficulty(questions)
    axes = panels(fig)
    assert len(axes) == 2
    # the fixture's base samples carry per-sample accuracies: binned by one half, measured from the other
    assert axes[0].get_xlabel() == "base pass rate (1st half of its samples)"
    assert axes[0].get_ylabel() == "Δ accuracy (mean@k)\nvs the base's 2nd half"
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO", "one seed"]
    bin_of = {"q0": "0", "q1": "(0, .25]", "q2": "(.25, .5]", "q3": "1"}  # base pass rates 0, .125, .5, 1
    assert [t.get_text() for t in axes[0].get_xticklabels()] == [
        f"{label}\nn={int(label in bin_of.values())}" for label in F.DIFFICULTY_BINS]
    for method in ("grpo", "sdpo", "sc_sdpo"):
        heights = [h for _, h in sorted(bar_heights(axes[0], f"mean:{method}").items())]
        expected = {bin_of[q]: np.mean([expected_gain(method, s, b) for s in (0, 1)]) for q, b in QUESTION_BASE.items()}
        for position, label in enumerate(F.DIFFICULTY_BINS):
            if label in expected:
                assert heights[position] == pytest.approx(expected[label]), (method, label)
            else:
                assert math.isnan(heights[position]), (method, label)
        dots = sorted(y for _, y in seed_points(axes[0], f"seeds:{method}"))
        seeds = sorted(expected_gain(method, s, b) for s in (0, 1) for b in QUESTION_BASE.values())
        assert dots == pytest.approx(seeds)


def test_fig8_intervals_with_three_seeds_stay_in_minus_one_one():
    rows = [{"model": "m", "task": "t", "method": "base", "algorithm": "base", "label": "Base", "ablation": False,
             "seed": 0, "question_id": "q", "mean": 0.0}]
    rows += [{"model": "m", "task": "t", "method": "grpo", "algorithm": "grpo", "label": "GRPO", "ablation": False,
              "seed": s, "question_id": "q", "mean": v} for s, v in enumerate([1.0, 1.0, 0.4])]
    ax = panels(F.fig8_gains_by_difficulty(pd.DataFrame(rows)))[0]
    ((_, low, high),) = intervals(ax, "interval:grpo")
    sd = math.sqrt((0.2**2 * 2 + 0.4**2) / 2)
    assert high == 1.0 and low == pytest.approx(0.8 - T2 * sd / math.sqrt(3))


def _question_row(method: str, seed: int, question: str, mean: float, accs=None) -> dict:
    return {"model": "m", "task": "t", "method": method, "algorithm": method, "label": method, "ablation": False,
            "seed": seed, "question_id": question, "mean": mean, "accs": accs}


def test_fig8_bins_by_the_first_half_of_the_base_samples_and_subtracts_the_second():
    rows = [_question_row("base", 0, "a", 0.5, (1.0, 1.0, 0.0, 0.0)),  # bin by 2/2 -> "1", base 0/2
            _question_row("base", 0, "b", 0.5, (0.0, 0.0, 1.0, 1.0)),  # bin "0", base 1
            _question_row("base", 0, "c", 0.75, (1.0, 0.0, 1.0, 1.0)),  # seeds: bin (.5 + 0) / 2 = .25
            _question_row("base", 1, "c", 0.25, (0.0, 0.0, 0.0, 1.0)),  # base (1 + .5) / 2 = .75
            _question_row("grpo", 0, "a", 0.5), _question_row("grpo", 0, "b", 0.25),
            _question_row("grpo", 0, "c", 1.0)]
    gains = F.gains_by_difficulty(pd.DataFrame(rows)).set_index("bin")["gain"]
    assert gains.to_dict() == pytest.approx({"1": 0.5 - 0.0, "0": 0.25 - 1.0, "(0, .25]": 1.0 - 0.75})
    rows.append(_question_row("base", 0, "d", 0.0, (0.0, 0.0, 0.0, 0.0)))
    rows.append(_question_row("grpo", 0, "d", 0.5))
    counts = F.gains_by_difficulty(pd.DataFrame(rows)).set_index("bin")["n_questions"]
    assert counts.to_dict() == {"1": 1, "0": 2, "(0, .25]": 1}
    fig = F.fig8_gains_by_difficulty(pd.DataFrame(rows))
    assert "1st half" in panels(fig)[0].get_xlabel()


def test_fig8_needs_base_and_trained_samples():
    with pytest.raises(ValueError, match="no trained-model evaluation samples"):
        F.gains_by_difficulty(pd.DataFrame([_question_row("base", 0, "a", 0.5, (1.0, 0.0))]))
    with pytest.raises(ValueError, match="no base-model evaluation samples"):
        F.gains_by_difficulty(pd.DataFrame([_question_row("grpo", 0, "a", 0.5)]))


def test_fig8_without_per_sample_accuracies_bins_and_subtracts_the_full_mean():
    rows = [_question_row("base", 0, "a", 0.75, None), _question_row("grpo", 0, "a", 1.0)]
    gains = F.gains_by_difficulty(pd.DataFrame(rows))
    assert gains[["bin", "gain", "split_base"]].values.tolist() == [["(.5, .75]", 0.25, False]]
    ax = panels(F.fig8_gains_by_difficulty(pd.DataFrame(rows)))[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("base-model pass rate on the question", "Δ accuracy vs base (mean@k)")


def test_fig8_shows_no_gain_for_a_model_that_did_not_change():
    """A trained model equal to the base (its accuracy = each question's true p) must show ~0 in every bin. Binning
    by the same noisy samples it subtracts shows the easy bins losing and the hard ones gaining (regression to
    the mean); the split does not."""
    rng = np.random.default_rng(0)
    true_p = np.repeat([0.3, 0.5, 0.7], 400)
    rows = []
    for i, p in enumerate(true_p):
        accs = tuple(float(x) for x in rng.random(16) < p)
        rows += [_question_row("base", 0, f"q{i}", float(np.mean(accs)), accs), _question_row("grpo", 0, f"q{i}", p)]
    frame = pd.DataFrame(rows)
    for split, most_biased in ((True, 0.05), (False, None)):
        gains = F.gains_by_difficulty(frame if split else frame.assign(accs=None))
        assert gains["split_base"].all() == split
        by_bin = gains.set_index("bin")["gain"]
        if split:
            assert by_bin.abs().max() < most_biased, by_bin.to_dict()
        else:  # the naive binning's bias, as a check that this test can tell the two apart
            assert by_bin["(.75, 1)"] < -0.1 and by_bin["(0, .25]"] > 0.1, by_bin.to_dict()


def test_difficulty_bins():
    assert [F.difficulty_bin(p) for p in (0, 0.0625, 0.25, 0.5, 0.75, 0.9375, 1)] == [
        "0", "(0, .25]", "(0, .25]", "(.25, .5]", "(.5, .75]", "(.75, 1)", "1"]
    with pytest.raises(ValueError):
        F.difficulty_bin(1.5)


# --------------------------------------------------------------------------------------------------- method keys


def test_free_method_keys_get_their_algorithm_s_role_and_style(tmp_path):
    from scsdpo_verl.analysis.runs import eval_frame, run_index_from_workflow, training_frame

    from .conftest import write_results

    rename = {"grpo": "baseline", "sdpo": "plain", "sc_sdpo": "scsdpo"}
    config = write_results(tmp_path, rename)
    for spec in config["methods"].values():
        spec.pop("label", None)  # labels come from the algorithm then
    index = run_index_from_workflow(config, tmp_path)
    fig = F.fig3_final_accuracy(eval_frame(index))
    assert legend_texts(fig.legends[0]) == ["Base", "GRPO", "SDPO", "SC-SDPO", "one seed"]
    ax = panels(fig)[0]
    sc_bar = bars(ax, "mean:scsdpo")[0]
    assert matplotlib.colors.to_hex(sc_bar.get_facecolor()) == METHOD_STYLES["sc_sdpo"].color.lower()
    fig = F.fig2_training_curves(training_frame(index))
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]


def test_style_is_colour_blind_safe_and_distinct():
    colors = [style.color for style in METHOD_STYLES.values()]
    assert len(set(colors)) == len(colors) and set(colors) <= set(OKABE_ITO.values())
    assert method_style("sc_sdpo_exp1").color in OKABE_ITO.values()
    styles = styles_for([("scsdpo", "sc_sdpo", None, False), ("sc_sdpo", "sc_sdpo", "exp 1", True)])
    assert styles["scsdpo"].color == METHOD_STYLES["sc_sdpo"].color  # the main grid's SC-SDPO, whatever its key
    assert styles["sc_sdpo"].color != METHOD_STYLES["sc_sdpo"].color  # an ablation variant is drawn apart


def test_figures_are_saved_as_png_and_pdf(evals, tmp_path):
    F.fig7_ablation(evals, tmp_path / "fig7")
    assert (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "fig7.pdf").stat().st_size > 0
