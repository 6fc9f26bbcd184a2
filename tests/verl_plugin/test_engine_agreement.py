"""verl's actor engine (CPU mode, fp32) and the local backend compute the same log-probs of the sampled tokens."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "scripts" / "engine_logprobs.py"


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_verl_log_probs_equal_the_local_backends_to_fp32_precision(verl_tiny):
    done = subprocess.run([sys.executable, str(SCRIPT), str(verl_tiny["model"]), free_port(), "0.7"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # verl runs its FSDP2 engine in fp32 in CPU mode (mixed precision pinned to fp32: no autocast)
    assert result["param_dtype"] == "torch.float32" and result["autocast_dtype"] == "torch.float32", result
    for layout in ("remove_padding=True", "remove_padding=False"):
        assert result[layout] < 1e-5, result
