"""Run index, loaders, per-bin loss coefficients and the three tables on the fixture results (conftest.py)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from scsdpo_verl.analysis.runs import bin_coefficients, make_run_index, read_metrics, step_bin_coefficients
from scsdpo_verl.analysis.tables import (
    AVERAGE,
    DELTA_METHOD,
    build_ablation_table,
    build_cost_table,
    build_gain_table,
    build_main_table,
    format_cell,
    latex_escape,
    wide_table,
)

T1 = 12.706204736  # t_{0.975, 1}: two seeds


def cell(table: pd.DataFrame, **keys) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, value in keys.items():
        mask &= table[key] == value
    rows = table[mask]
    assert len(rows) == 1, f"{keys}: {len(rows)} rows"
    return rows.iloc[0]


def test_index_and_frames(index, training, evals, questions):
    assert len(index) == 2 * 3 * 2 + 2 * 2 + 2  # main grid + ablation + base per task
    sdpo = index[index["method"] == "sdpo"].iloc[0]
    assert sdpo["exponent"] == 0.0 and sdpo["group_size"] == 4
    assert set(training["step"]) == set(range(7))
    assert len(evals) == len(index) and set(evals.columns) >= {"mean@16", "maj@16", "maj@16_bootstrap"}
    assert len(questions) == 4 * len(index)


def test_make_run_index_rejects_bad_entries():
    with pytest.raises(ValueError, match="entry 0: missing field 'seed'"):
        make_run_index([{"model": "m", "task": "t", "method": "grpo"}])
    with pytest.raises(ValueError, match="field 'algorithm'"):
        make_run_index([{"model": "m", "task": "t", "method": "ppo", "seed": 0}])


def test_read_metrics_names_the_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"loss": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: field 'step' missing"):
        read_metrics(path)


def test_bin_coefficients_hand_worked():
    # n = 4: one group with 1 success (3 failures have a teacher, the lone success not), one with 4 successes
    counts = [0, 1, 0, 0, 1]
    assert bin_coefficients(counts, 4, algorithm="sdpo") == pytest.approx([0, 3, 0, 0, 4])
    # SC-SDPO: p = 1 gets weight 0; batch-mean normalisation makes the 7 active weights sum to 7
    assert bin_coefficients(counts, 4, algorithm="sc_sdpo", exponent=0.5) == pytest.approx([0, 7, 0, 0, 0])
    # GRPO: |r - 0.25| = 0.75 for the success and 0.25 for each of 3 failures
    assert bin_coefficients(counts, 4, algorithm="grpo") == pytest.approx([0, 1.5, 0, 0, 0])


def test_step_bin_coefficients_keeps_question_counts(training):
    bins = step_bin_coefficients(training)
    one_run = bins[(bins["method"] == "sdpo") & (bins["task"] == "sci") & (bins["seed"] == 0)]
    assert one_run.groupby("step")["questions"].sum().tolist() == [4.0] * 6
    step3 = one_run[one_run["step"] == 3].set_index("k")["coefficient"]  # hist [2, 0, 0, 1, 1]
    assert step3.tolist() == pytest.approx([0, 0, 0, 4, 4])


def test_main_table_values_and_delta(evals, tmp_path):
    table = build_main_table(evals, tmp_path / "main_table")
    sc = cell(table, method="sc_sdpo", benchmark="sci", metric="mean@16")
    assert sc["mean"] == pytest.approx(0.6) and sc["half_width"] == pytest.approx(T1 * 0.1) and sc["n_seeds"] == 2
    assert cell(table, method="sc_sdpo", benchmark="sci", metric="maj@16_bootstrap")["mean"] == pytest.approx(0.62)
    # average over benchmarks per seed: (0.5 + 0.4) / 2 = 0.45 and (0.7 + 0.4) / 2 = 0.55
    average = cell(table, method="sc_sdpo", benchmark=AVERAGE, metric="mean@16")
    assert average["mean"] == pytest.approx(0.5) and average["half_width"] == pytest.approx(T1 * 0.05)
    # Delta, paired by seed: sci 0.1 and 0.2; average 0.1 and 0.1
    delta = cell(table, method=DELTA_METHOD, benchmark="sci", metric="mean@16")
    assert delta["mean"] == pytest.approx(0.15) and delta["half_width"] == pytest.approx(T1 * 0.05)
    assert cell(table, method=DELTA_METHOD, benchmark=AVERAGE, metric="mean@16")["half_width"] == pytest.approx(0)
    base = cell(table, method="base", benchmark="tool", metric="mean@16")
    assert base["mean"] == pytest.approx(0.2) and math.isnan(base["half_width"]) and base["n_seeds"] == 1
    assert "sc_sdpo_exp1" not in set(table["method"])  # ablation variants stay out of the main table
    assert table["method"].drop_duplicates().tolist() == ["base", "grpo", "sdpo", "sc_sdpo", DELTA_METHOD]

    csv = pd.read_csv(tmp_path / "main_table.csv")
    assert len(csv) == len(table)
    markdown = (tmp_path / "main_table.md").read_text()
    # columns: model, label, seeds, sci mean@16, sci maj@16 (bootstrap = mean + 0.02), tool ..., average ...
    assert "| model | label | seeds | sci final mean@16 | sci final maj@16 | tool final mean@16 | tool final maj@16 |" \
        in markdown
    # sd over seeds next to the interval: sci (0.5, 0.7) -> sd 0.1414; tool (0.4, 0.4) -> 0
    assert "| tiny | SC-SDPO | 2 | 60.0 ± 127.1 (sd 14.1) | 62.0 ± 127.1 (sd 14.1) | 40.0 ± 0.0 (sd 0.0) | " \
        "42.0 ± 0.0 (sd 0.0) |" in markdown
    assert sc["std"] == pytest.approx(0.1 * 2 ** 0.5)
    assert "| tiny | Base | 1 | 30.0 | 32.0 | 20.0 | 22.0 | 25.0 | 27.0 |" in markdown
    latex = (tmp_path / "main_table.tex").read_text()
    assert r"\toprule" in latex and r"60.0 $\pm$ 127.1" in latex and r"$\Delta$ SC-SDPO" in latex


def test_gain_table_against_hand_computed_differences(evals, tmp_path):
    table = build_gain_table(evals, tmp_path / "gains")
    # sci: base 0.30; grpo (0.40, 0.44) -> gains (0.10, 0.14)
    grpo = cell(table, method="grpo", benchmark="sci", metric="mean@16")
    gains = [0.10, 0.14]
    mean = sum(gains) / 2
    sd = ((gains[0] - mean) ** 2 + (gains[1] - mean) ** 2) ** 0.5  # n - 1 = 1
    assert grpo["mean"] == pytest.approx(0.12) and grpo["half_width"] == pytest.approx(T1 * sd / 2 ** 0.5)
    assert grpo["label"] == "GRPO − Base" and not grpo["excludes_zero"]  # 0.12 ± 0.254
    # tool: base 0.20; sc_sdpo (0.40, 0.40) -> gain 0.20 with no spread: the interval [0.2, 0.2] excludes 0
    sc = cell(table, method="sc_sdpo", benchmark="tool", metric="mean@16")
    assert sc["mean"] == pytest.approx(0.20) and sc["half_width"] == pytest.approx(0) and sc["excludes_zero"]
    # maj@16 (bootstrap) = mean@16 + 0.02 on both sides: the same gains
    assert cell(table, method="sc_sdpo", benchmark="tool", metric="maj@16_bootstrap")["mean"] == pytest.approx(0.20)
    # average per seed over sci and tool: base 0.25, sdpo (0.35, 0.45) -> (0.10, 0.20)
    assert cell(table, method="sdpo", benchmark=AVERAGE, metric="mean@16")["mean"] == pytest.approx(0.15)
    # SC-SDPO - SDPO paired by seed: sci (0.1, 0.2), tool (0.1, 0.0)
    delta = cell(table, method=DELTA_METHOD, benchmark="sci", metric="mean@16")
    assert delta["mean"] == pytest.approx(0.15) and delta["half_width"] == pytest.approx(T1 * 0.05)
    assert delta["label"] == "SC-SDPO − SDPO"
    assert cell(table, method=DELTA_METHOD, benchmark="tool", metric="mean@16")["mean"] == pytest.approx(0.05)
    assert "base" not in set(table["method"]) and "sc_sdpo_exp1" not in set(table["method"])
    markdown = (tmp_path / "gains.md").read_text()
    assert "| tiny | SC-SDPO − Base | tool | final mean@16 | +20.0 ± 0.0 | [+20.0, +20.0] | 2 | yes |" \
        in markdown
    assert "| tiny | GRPO − Base | sci | final mean@16 | +12.0 ± 25.4 | [-13.4, +37.4] | 2 | no |" in markdown
    assert (tmp_path / "gains.csv").exists() and r"$\pm$" in (tmp_path / "gains.tex").read_text()
    assert "With 2 seeds an interval says little" in markdown


def test_gain_table_one_seed_claims_nothing(evals):
    one_seed = evals[evals["seed"] == 0]
    table = build_gain_table(one_seed)
    assert len(table) and table["half_width"].isna().all() and not table["excludes_zero"].any()


def test_tables_say_what_they_show(evals, tmp_path):
    build_main_table(evals, tmp_path / "main_table")
    build_ablation_table(evals, tmp_path / "ablation_table")
    for name in ("main_table", "ablation_table"):
        for text in ((tmp_path / f"{name}.md").read_text(), (tmp_path / f"{name}.tex").read_text()):
            flat = " ".join(text.split()).replace(r"\%", "%").replace(r"$\pm$", "±")  # LaTeX read as text
            assert "95% Student-t interval over seeds" in flat and "t = 12.71 with 2 seeds" in flat, name
            assert "maj@16: the bootstrap estimate of majority-vote accuracy" in flat, name
            assert "no ± and no sd with one seed" in flat and "the papers' mean ± std" in flat, name
    assert "average: per seed, the mean over the benchmarks every row of the model has (tiny: sci, tool)" in \
        (tmp_path / "main_table.md").read_text()


def test_main_table_average_uses_only_benchmarks_every_row_has(evals):
    # GRPO seed 1 lost its tool evaluation: its average is seed 0's only; the other rows keep both seeds
    partial = evals[~((evals["method"] == "grpo") & (evals["task"] == "tool") & (evals["seed"] == 1))]
    table = build_main_table(partial)
    grpo = cell(table, method="grpo", benchmark=AVERAGE, metric="mean@16")
    assert grpo["mean"] == pytest.approx((0.40 + 0.30) / 2) and grpo["n_seeds"] == 1
    assert cell(table, method="sdpo", benchmark=AVERAGE, metric="mean@16")["n_seeds"] == 2
    shown = wide_table(table, ("model", "label")).set_index("label")["seeds"]
    assert shown.to_dict() == {"Base": "1", "GRPO": "1–2", "SDPO": "2", "SC-SDPO": "2", "Δ SC-SDPO − SDPO": "2"}
    # a model whose rows share one benchmark only has no average at all
    assert AVERAGE not in set(build_main_table(evals[evals["task"] == "sci"])["benchmark"])


def test_main_table_finds_methods_by_algorithm_whatever_their_keys(tmp_path):
    from scsdpo_verl.analysis.runs import eval_frame, run_index_from_workflow

    from .conftest import write_results

    rename = {"grpo": "baseline", "sdpo": "plain", "sc_sdpo": "scsdpo", "sc_sdpo_exp1": "e1"}
    config = write_results(tmp_path, rename)
    table = build_main_table(eval_frame(run_index_from_workflow(config, tmp_path)))
    delta = "delta_scsdpo_minus_plain"
    assert table["method"].drop_duplicates().tolist() == ["base", "baseline", "plain", "scsdpo", delta]
    row = cell(table, method=delta, benchmark="sci", metric="mean@16")
    assert row["label"] == "Δ SC-SDPO − SDPO" and row["mean"] == pytest.approx(0.15)
    assert "e1" not in set(table["method"])


def test_maj_exact_option(evals):
    table = build_main_table(evals, maj="exact")
    assert cell(table, method="grpo", benchmark="sci", metric="maj@16")["mean"] == pytest.approx(0.47)


def test_ablation_table(evals, tmp_path):
    table = build_ablation_table(evals, tmp_path / "ablation_table")
    sci = table[(table["benchmark"] == "sci") & (table["metric"] == "mean@16")]
    by_label = dict(zip(sci["label"], sci["mean"], strict=True))
    assert by_label == pytest.approx({"exponent 0 (SDPO)": 0.45, "exponent 0.5, batch_max": 0.64,
                                      "exponent 0.5, batch_mean": 0.6, "exponent 1, batch_mean": 0.5})
    assert cell(sci, label="exponent 0.5, batch_max")["half_width"] == pytest.approx(T1 * 0.02)
    # exponent 1 and batch_max ran on sci only: an "average" would compare different task sets, so none
    assert AVERAGE not in set(table["benchmark"])
    markdown = (tmp_path / "ablation_table.md").read_text()
    assert markdown.count("| tiny |") == 4 and "average" not in markdown.splitlines()[2]
    assert "tiny: none (fewer than 2 benchmarks shared by every row)" in markdown


def test_ablation_table_average_when_every_row_has_every_task(evals):
    table = build_ablation_table(evals[~evals["method"].isin(["sc_sdpo_exp1", "sc_sdpo_max"])])
    average = table[(table["benchmark"] == AVERAGE) & (table["metric"] == "mean@16")]
    # per seed (sci + tool) / 2, then the mean over seeds: SDPO (0.35, 0.45), SC-SDPO (0.45, 0.55)
    assert dict(zip(average["label"], average["mean"], strict=True)) == pytest.approx(
        {"exponent 0 (SDPO)": 0.4, "exponent 0.5, batch_mean": 0.5})


def test_cost_table_reads_the_snakemake_benchmarks(index, training, tmp_path):
    """conftest.TRAIN_BENCH / EVAL_BENCH: per run (wall s, CPU s, peak MB), seed 1 adds 10 s, 20 s, 100 MB."""
    table = build_cost_table(index, training, tmp_path / "cost_table")
    sc = cell(table, method="sc_sdpo")
    # 2 tasks x seeds 0, 1: wall 2 x (210 + 220) s, CPU 2 x (400 + 420) s, peak max(1600, 1700) MB
    assert sc["runs"] == 4
    assert sc["wall_hours"] == pytest.approx(860 / 3600) and sc["cpu_hours"] == pytest.approx(1640 / 3600)
    assert sc["max_rss_mb"] == 1700 and sc["gpu_hours"] == 0
    assert sc["eval_wall_hours"] == pytest.approx(4 * 30 / 3600) and sc["eval_max_rss_mb"] == 800
    # not the logged step times (6 steps of 2 s and 3 s = 60 s): those give only the median step time
    assert sc["median_step_s"] == pytest.approx(2.5)
    assert sc["tokens_generated"] == pytest.approx(2 * (81 + 87) * 16)
    # ratios over the same runs: SDPO 820 s / 1560 s / 1600 MB, GRPO 420 s / 640 s / 1100 MB
    sdpo_grpo = cell(table, method="ratio_sdpo_over_grpo")
    assert sdpo_grpo["label"] == "SDPO / GRPO" and sdpo_grpo["runs"] == 4
    assert sdpo_grpo["wall_hours"] == pytest.approx(820 / 420) and sdpo_grpo["cpu_hours"] == pytest.approx(1560 / 640)
    assert sdpo_grpo["max_rss_mb"] == pytest.approx(1600 / 1100)
    sc_sdpo = cell(table, method="ratio_sc_sdpo_over_sdpo")
    assert sc_sdpo["label"] == "SC-SDPO / SDPO" and sc_sdpo["wall_hours"] == pytest.approx(860 / 820)
    assert sc_sdpo["cpu_hours"] == pytest.approx(1640 / 1560) and sc_sdpo["max_rss_mb"] == pytest.approx(1700 / 1600)
    assert table["method"].tolist()[-2:] == ["ratio_sdpo_over_grpo", "ratio_sc_sdpo_over_sdpo"]
    markdown = (tmp_path / "cost_table.md").read_text()
    assert "| tiny | SDPO / GRPO | 4 | 1.95x | 2.44x | 1.45x |" in markdown and "5,376" in markdown


def test_cost_ratios_use_the_runs_both_methods_have(index, training):
    # GRPO lost its tool runs: the SDPO / GRPO ratio compares the sci runs only (SDPO 410 s / GRPO 210 s)
    partial = index[~((index["method"] == "grpo") & (index["task"] == "tool"))]
    ratio = cell(build_cost_table(partial, training), method="ratio_sdpo_over_grpo")
    assert ratio["runs"] == 2 and ratio["wall_hours"] == pytest.approx(410 / 210)


def test_cost_table_needs_the_benchmark_file(index, training, tmp_path):
    one = index[(index["method"] == "grpo") & (index["task"] == "sci") & (index["seed"] == 0)].copy()
    one["benchmark_path"] = str(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match=r"missing\.tsv: Snakemake benchmark file not found"):
        build_cost_table(one, training)
    bad = tmp_path / "bad.tsv"
    bad.write_text("s\tcpu_time\n1.0\t2.0\n")
    one["benchmark_path"] = str(bad)
    with pytest.raises(ValueError, match=r"bad\.tsv: column 'max_rss' missing"):
        build_cost_table(one, training)


def test_formatting():
    assert format_cell(0.6, 0.0127) == "60.0 ± 1.3"
    assert format_cell(0.6, 0.0127, std=0.0051) == "60.0 ± 1.3 (sd 0.5)"
    assert format_cell(-0.012, float("nan"), signed=True) == "-1.2" and format_cell(0.03, 0.01, signed=True) == \
        "+3.0 ± 1.0"
    assert format_cell(0.6, float("nan")) == "60.0"
    assert format_cell(float("nan"), 0.1) == "–"
    assert latex_escape("a_b & 50%") == r"a\_b \& 50\%"


def test_eval_frame_reports_missing_metrics(tmp_path):
    from scsdpo_verl.analysis.runs import eval_frame

    (tmp_path / "results.json").write_text(json.dumps({"repeats": 16}))
    index = make_run_index([{"model": "m", "task": "t", "method": "base", "seed": 0, "eval_dir": str(tmp_path)}])
    with pytest.raises(ValueError, match=r"results\.json: field 'metrics' missing"):
        eval_frame(index)


def test_teacher_signal_from_the_runs_config(index, evals, tmp_path):
    from scsdpo_verl.analysis.runs import teacher_signal, teacher_signals

    # verl runs record it; the local trainer's config has topk / add_tail / alpha and always distils top-k JSD
    assert teacher_signal("sdpo", {"teacher_signal": "sampled_token"}) == "sampled-token"
    assert teacher_signal("sc_sdpo", {"teacher_signal": "topk_jsd", "topk": 100, "add_tail": True, "alpha": 0.5}) \
        == "top-100 + tail JSD (alpha 0.5)"
    assert teacher_signal("sdpo", {"topk": 20, "add_tail": False}) == "top-20 JSD"
    assert teacher_signal("grpo", {"teacher_signal": "topk_jsd"}) is None
    assert teacher_signal("sdpo", {"teacher_signal": "topk_jsd", "topk": None}) == "full-vocabulary JSD"
    signals = teacher_signals(index)
    # (no topk recorded: the trainers' default, 100)
    assert set(signals) == {"sdpo", "sc_sdpo", "sc_sdpo_exp1", "sc_sdpo_max"}
    assert signals["sdpo"] == "top-100 + tail JSD"
    build_main_table(evals, tmp_path / "main_table", teacher_signals=signals)
    assert "Teacher signal (the runs' recorded config): SDPO: top-100 + tail JSD; SC-SDPO: top-100 + tail JSD" in \
        (tmp_path / "main_table.md").read_text()
