"""The base-model table reads what make_base reports, one row per model x task."""

from __future__ import annotations

import csv
import json

import pytest

from scsdpo_verl.analysis.base_models import COLUMNS, base_model_rows, write_base_table


def _report(pass_rate, teacher, levels, signal=None, guess=None, on_successes=None):
    task = {"k": 8, "questions": 10, "mean_pass_rate": pass_rate, "mixed_fraction": 0.4,
            "mean_pass_rate_by_difficulty": {str(i + 1): v for i, v in enumerate(levels)},
            "teacher_format_mean_pass_rate": teacher, "teacher_signal_on_failures": signal}
    if on_successes is not None:
        task["teacher_signal_on_successes"] = on_successes
    if guess is not None:
        task["guess_rate"] = guess
    return task


def test_rows_hold_levels_gain_and_teacher_signal(tmp_path):
    signal = {"failed_rollouts": 40, "teacher_mass_on_correct_token": 0.6, "student_mass_on_correct_token": 0.2,
              "teacher_above_student_fraction": 0.9}
    reports = {"qwen3-tiny": {"precision": "auto: fp32", "copy_probes": [
        {"extra_drill_steps": 0, "loss": 0.49}, {"extra_drill_steps": 50, "loss": 0.36},
        {"extra_drill_steps": 100, "loss": 0.26}], "tasks": {
        "synthetic_science": _report(0.5, 0.875, [0.9, 0.6, 0.5, 0.3, 0.2], signal, guess=0.3,
                                     on_successes={"successful_rollouts": 30, "doubted_rollout_fraction": 0.2,
                                                   "doubted_token_fraction": 0.01,
                                                   "teacher_mass_on_own_tokens": 0.97}),
        "synthetic_tooluse": _report(0.25, 0.25, [0.75, 0.25, 0.0])}}}
    rows = base_model_rows(reports)
    assert [(r["model"], r["task"]) for r in rows] == [("qwen3-tiny", "synthetic_science"),
                                                      ("qwen3-tiny", "synthetic_tooluse")]
    science, tools = rows
    assert science["teacher_format_gain"] == 0.375 and science["level_1"] == 0.9 and science["level_5"] == 0.2
    assert science["teacher_mass_correct_token"] == 0.6 and science["student_mass_correct_token"] == 0.2
    assert science["guess_rate"] == 0.3 and science["precision"] == "auto: fp32"
    assert tools["level_4"] is None and tools["guess_rate"] is None and tools["failed_rollouts"] is None
    assert tools["teacher_format_gain"] == 0.0
    assert (tools["copy_probe_loss"], tools["extra_drill_steps"]) == (0.26, 100)  # the last probe, per model
    unchecked = base_model_rows({"olmo3-tiny": {"copy_probes": [], "tasks": {"t": _report(0.1, 0.2, [0.1])}}})
    assert unchecked[0]["copy_probe_loss"] is None and unchecked[0]["extra_drill_steps"] is None
    assert science["successful_rollouts"] == 30 and science["teacher_doubted_success_fraction"] == 0.2
    assert science["teacher_mass_own_tokens"] == 0.97 and tools["teacher_doubted_success_fraction"] is None
    path = tmp_path / "r.json"
    path.write_text(json.dumps(reports["qwen3-tiny"]))
    write_base_table({"qwen3-tiny": path}, tmp_path / "t.csv", tmp_path / "t.md")
    with open(tmp_path / "t.csv") as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == list(COLUMNS) and float(read[0]["teacher_format_gain"]) == pytest.approx(0.375)
    assert "| qwen3-tiny | synthetic_science | 10 | 8 | 0.500 | 0.900 |" in (tmp_path / "t.md").read_text()
