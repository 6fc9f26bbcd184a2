"""bench/base_competence.py (how the default's warm start is calibrated, on the validation split) runs at toy
sizes and writes what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "base_competence.py"


def test_base_competence_runs_at_toy_sizes(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--steps", "4", "--drills", "2",
                           "--rows", "40", "--questions", "5", "--k", "2", "--batch", "4"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "competence.json").read_text())
    assert result["args"]["drills"] == 2
    for task in ("synthetic_science", "synthetic_tooluse"):
        report = result["tasks"][task]
        assert report["questions"] == 5 and report["k"] == 2
        gain = report["teacher_format_mean_pass_rate"] - report["mean_pass_rate"]
        assert abs(report["teacher_format_gain"] - gain) < 1e-12
        assert f"{task}: pass rate {report['mean_pass_rate']:.3f}" in done.stdout


def test_measure_gain_is_teacher_format_minus_plain(monkeypatch):
    """Toy models score 0 both ways, so the arithmetic is checked with known pass rates."""
    import importlib.util

    from scsdpo_verl.local import models

    spec = importlib.util.spec_from_file_location("base_competence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plain, teacher = [0.25, 0.5, 0.0], [1.0, 0.5, 0.25]
    monkeypatch.setattr(models, "teacher_signal", lambda *a, **k: {"pass_rates": list(plain), "failed_rollouts": 3,
                                                                   "on_successes": {"successful_rollouts": 5}})
    monkeypatch.setattr(models, "question_pass_rates", lambda *a, **k: list(teacher))
    report = module.measure(None, None, "synthetic_tooluse", 3, 4, seed=0)
    assert report["mean_pass_rate"] == 0.25 and report["teacher_format_mean_pass_rate"] == 0.5833333333333334
    assert abs(report["teacher_format_gain"] - (1.75 / 3 - 0.25)) < 1e-12
    assert report["histogram_successes_of_k"] == [1, 1, 1, 0, 0]  # 0/4, 1/4, 2/4
    assert report["teacher_signal_on_failures"] == {"failed_rollouts": 3}
    assert report["teacher_signal_on_successes"] == {"successful_rollouts": 5}
