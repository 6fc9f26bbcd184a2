"""The base-model table: competence and self-teacher measurements of each base checkpoint, from the
``base_report.json`` files that ``scsdpo_verl.local.models.make_base`` writes (one row per model x task).

Columns: pass rate at T=1 overall and per difficulty level, the guessing rate of the answer format (science),
the share of mixed questions (0 < successes < k), the teacher-format pass rate (the worked solution in the
self-teacher's prompt) and its gain over the plain prompt, and, on failed rollouts, the mass the self-teacher and
the student put on the correct token where the rollout leaves the worked solution; on successful rollouts, the
share the self-teacher doubts (gives less than 0.5 to one of their tokens) and its mean mass on their tokens;
the warm start's precision and its copy check: the last probe's loss (nats per copied token, ``copy_probe_loss``)
and the drill steps the check added (empty where the check was off); ``base``: whether the run built the base or
copied a shipped one (``scsdpo_verl.local.shipped_bases``; empty in reports older than that).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scsdpo_verl.analysis.rows import markdown_table, write_csv

COLUMNS = ("model", "task", "questions", "k", "pass_rate", "level_1", "level_2", "level_3", "level_4", "level_5",
           "guess_rate", "mixed_fraction", "teacher_format_pass_rate", "teacher_format_gain",
           "failed_rollouts", "teacher_mass_correct_token", "student_mass_correct_token",
           "teacher_above_student_fraction", "successful_rollouts", "teacher_doubted_success_fraction",
           "teacher_mass_own_tokens", "precision", "copy_probe_loss", "extra_drill_steps", "base")


def base_model_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, task) of the ``reports`` (model name -> base_report.json content), in COLUMNS order."""
    rows = []
    for model, report in reports.items():
        last_probe = (report.get("copy_probes") or [None])[-1] or {}
        for task, result in report.get("tasks", {}).items():
            by_level = result.get("mean_pass_rate_by_difficulty", {})
            signal = result.get("teacher_signal_on_failures") or {}
            on_successes = result.get("teacher_signal_on_successes") or {}
            teacher = result.get("teacher_format_mean_pass_rate")
            rows.append({
                "model": model, "task": task, "questions": result["questions"], "k": result["k"],
                "pass_rate": result["mean_pass_rate"],
                **{f"level_{level}": by_level.get(str(level)) for level in range(1, 6)},
                "guess_rate": result.get("guess_rate"),
                "mixed_fraction": result["mixed_fraction"],
                "teacher_format_pass_rate": teacher,
                "teacher_format_gain": None if teacher is None else teacher - result["mean_pass_rate"],
                "failed_rollouts": signal.get("failed_rollouts"),
                "teacher_mass_correct_token": signal.get("teacher_mass_on_correct_token"),
                "student_mass_correct_token": signal.get("student_mass_on_correct_token"),
                "teacher_above_student_fraction": signal.get("teacher_above_student_fraction"),
                "successful_rollouts": on_successes.get("successful_rollouts"),
                "teacher_doubted_success_fraction": on_successes.get("doubted_rollout_fraction"),
                "teacher_mass_own_tokens": on_successes.get("teacher_mass_on_own_tokens"),
                "precision": report.get("precision", "bf16" if report.get("bf16") else "fp32"),
                "copy_probe_loss": last_probe.get("loss"),
                "extra_drill_steps": last_probe.get("extra_drill_steps"),
                "base": report.get("base"),
            })
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_base_table(report_paths: Mapping[str, str | Path], csv_path: str | Path,
                     md_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read the reports (model name -> path), write the table as CSV (and Markdown); returns the rows."""
    rows = base_model_rows({model: json.loads(Path(path).read_text()) for model, path in report_paths.items()})
    write_csv(rows, csv_path, COLUMNS)
    if md_path is not None:
        Path(md_path).write_text(markdown_table(rows, COLUMNS, _cell))
    return rows
