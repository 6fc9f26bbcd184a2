"""Each figure renders from the fixture frames with the expected panels, axis labels and legend entries."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest

from scsdpo_verl.analysis import figures as F
from scsdpo_verl.analysis.style import METHOD_STYLES, OKABE_ITO, method_style

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panels(fig):
    """Data axes (colour bars excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_fig1_learnability(training):
    fig = F.fig1_learnability(training, mc_groups=200, mc_pass_rates=(0.25, 0.75))
    theory, measured = panels(fig)
    assert theory.get_xlabel() == "pass rate p" and theory.get_ylabel() == "per-question gradient scale"
    assert legend_texts(theory.get_legend()) == ["GRPO (raw)", "GRPO (std-norm.)", "SDPO", "SC-SDPO",
                                                 "Monte Carlo (± 2 s.e.)"]
    assert measured.get_xlabel() == "observed pass rate p̂ = k/n"
    assert legend_texts(measured.get_legend()) == ["GRPO", "SDPO", "SC-SDPO", "exp 1", "max norm"]
    # the SDPO closed-form line reaches 1 - (1 - p)^7 -> 1 at p = 1
    sdpo_line = next(line for line in theory.get_lines() if line.get_label() == "SDPO")
    assert sdpo_line.get_ydata()[-1] == pytest.approx(1.0) and sdpo_line.get_ydata()[0] == 0.0
    assert len(panels(F.fig1_learnability(None, mc_groups=50, mc_pass_rates=(0.5,)))) == 1  # theory only


def test_fig2_training_curves(training):
    fig = F.fig2_training_curves(training)
    axes = panels(fig)
    assert len(axes) == 4  # (step, wall time) x tasks sci, tool
    assert [ax.get_xlabel() for ax in axes] == ["training step", "training step", "wall-clock time (min)",
                                                "wall-clock time (min)"]
    assert all(ax.get_ylabel() == "validation mean@k" for ax in axes)
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]
    sc_line = axes[0].get_lines()[2]  # sci, vs step, SC-SDPO: 0.2, then 0.2 + 0.05 t + 0.1
    assert list(sc_line.get_xdata()) == [0, 3, 6]
    assert list(sc_line.get_ydata()) == pytest.approx([0.2, 0.45, 0.6])
    wall = axes[2].get_lines()[0].get_xdata()  # GRPO: seeds take 2 s and 3 s a step -> mean 2.5 s x steps
    assert list(wall) == pytest.approx([0, 7.5 / 60, 15 / 60])


def test_fig3_final_accuracy(evals):
    fig = F.fig3_final_accuracy(evals)
    axes = panels(fig)
    assert len(axes) == 2  # mean@16 and maj@16 for the one model
    assert [ax.get_ylabel() for ax in axes] == ["accuracy (mean@16)", "accuracy (maj@16)"]
    assert legend_texts(fig.legends[0]) == ["Base", "GRPO", "SDPO", "SC-SDPO"]
    heights = [bar.get_height() for bar in axes[0].patches]  # method-major: base sci, base tool, grpo sci, ...
    assert heights == pytest.approx([0.30, 0.20, 0.42, 0.30, 0.45, 0.35, 0.60, 0.40])


def test_fig4_curriculum(training):
    fig = F.fig4_curriculum(training)
    axes = panels(fig)
    assert len(axes) == 6  # (sci, tool) x (GRPO, SDPO, SC-SDPO)
    assert len(fig.axes) == 7  # plus the colour bar
    assert {ax.get_ylabel() for ax in axes} == {"pass rate p̂"}
    assert axes[0].get_title() == "GRPO: tiny / sci"
    shares = axes[0].collections[0].get_array().reshape(5, 6)  # [k, step]
    assert shares[:, 3].tolist() == pytest.approx([0, 0, 1, 0, 0])  # step 4: all four questions at k = 2


def test_fig5_weight_share(training):
    fig = F.fig5_weight_share(training)
    axes = panels(fig)
    assert len(axes) == 4 and [ax.get_title() for ax in axes[:2]] == ["SDPO: tiny / sci", "SC-SDPO: tiny / sci"]
    assert legend_texts(fig.legends[0]) == [f"p̂ = {k}/4" for k in range(5)]
    assert {ax.get_ylabel() for ax in axes} == {"share of loss weight"}


def test_fig6_stability(training):
    fig = F.fig6_stability(training)
    axes = panels(fig)
    assert len(axes) == 6
    assert [ax.get_ylabel() for ax in axes[:3]] == ["gradient norm", "policy entropy (nats)",
                                                    "response length (tokens)"]
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]
    assert axes[0].get_lines()[0].get_ydata() == pytest.approx([1.0 + 0.1 * s for s in range(1, 7)])


def test_fig7_ablation(evals):
    fig = F.fig7_ablation(evals)
    by_exponent, by_normaliser = panels(fig)
    assert by_exponent.get_xlabel() == "SC exponent (0 = SDPO, 0.5 = SC-SDPO)"
    assert by_normaliser.get_xlabel() == "normalisation of the SC weights"
    assert legend_texts(fig.legends[0]) == ["tiny / sci", "tiny / tool"]
    sci = by_exponent.get_lines()[0]
    assert list(sci.get_xdata()) == [0.0, 0.5, 1.0] and list(sci.get_ydata()) == pytest.approx([0.45, 0.6, 0.5])
    assert [t.get_text() for t in by_normaliser.get_xticklabels()] == ["batch_max", "batch_mean"]


def test_fig8_gains_by_difficulty(questions):
    gains = F.gains_by_difficulty(questions)
    # gain = 0.1/0.2/0.3 (+0.1 for seed 1) on every question not capped at 1: means 0.15, 0.25, 0.35
    sc = gains[(gains["method"] == "sc_sdpo") & (gains["task"] == "sci")].set_index("bin")["gain"]
    assert sc.to_dict() == pytest.approx({"0": 0.35, "(0, .25]": 0.35, "(.25, .5]": 0.35, "1": 0.0})
    fig = F.fig8_gains_by_difficulty(questions)
    axes = panels(fig)
    assert len(axes) == 2
    assert axes[0].get_xlabel() == "base-model pass rate on the question"
    assert axes[0].get_ylabel() == "Δ accuracy vs base (mean@k)"
    assert legend_texts(fig.legends[0]) == ["GRPO", "SDPO", "SC-SDPO"]


def test_difficulty_bins():
    assert [F.difficulty_bin(p) for p in (0, 0.0625, 0.25, 0.5, 0.75, 0.9375, 1)] == [
        "0", "(0, .25]", "(0, .25]", "(.25, .5]", "(.5, .75]", "(.75, 1)", "1"]
    with pytest.raises(ValueError):
        F.difficulty_bin(1.5)


def test_style_is_colour_blind_safe_and_distinct():
    colors = [style.color for style in METHOD_STYLES.values()]
    assert len(set(colors)) == len(colors) and set(colors) <= set(OKABE_ITO.values())
    assert method_style("sc_sdpo_exp1").color in OKABE_ITO.values()


def test_figures_are_saved_as_png_and_pdf(evals, tmp_path):
    F.fig7_ablation(evals, tmp_path / "fig7")
    assert (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "fig7.pdf").stat().st_size > 0
