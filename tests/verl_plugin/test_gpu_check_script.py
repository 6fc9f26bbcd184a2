"""bench/gpu_teacher_check.py (the one-GPU checks of the teacher path) runs at toy sizes on CPU, so it does not rot
between the sessions that have a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_teacher_check.py"


def test_the_gpu_check_script_passes_at_toy_sizes_on_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--small"], capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sum(line.startswith("[ok]") for line in lines) == 4 and not any("FAIL" in line for line in lines), lines
