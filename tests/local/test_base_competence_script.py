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
