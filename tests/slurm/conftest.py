"""The `slurm_cluster` session fixture: a single-node SLURM cluster started by cluster.sh, stopped at the end.

Skips (with the reason) where it cannot run: not root, or SLURM neither installed nor installable with apt-get.
With CI=true those skips become failures. SCSDPO_SLURM_TESTS=0 skips on purpose (refused in CI).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .slurm_tools import CLUSTER_SH, console, skip_or_fail

LOCK_PATH = Path("/tmp/scsdpo-slurm.lock")  # one test session at a time may own the cluster (ports, /etc/slurm)
SLURM_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")


def _missing_binaries() -> list[str]:
    return [b for b in SLURM_BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _cluster(command: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SH), command], capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def slurm_cluster(request):
    """Start the cluster once per session; yields nothing useful (the names are in slurm_tools)."""
    say = console(request.config, "SLURM cluster")
    if os.environ.get("SCSDPO_SLURM_TESTS") == "0":
        skip_or_fail("SCSDPO_SLURM_TESTS=0")
    if os.geteuid() != 0:
        skip_or_fail("the SLURM tests need root (apt-get install slurm-wlm, and the daemons run as root)")
    if _missing_binaries() and shutil.which("apt-get") is None:
        skip_or_fail(f"SLURM is not installed ({', '.join(_missing_binaries())} missing) and apt-get is unavailable")
    lock = LOCK_PATH.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        skip_or_fail(f"another test session holds {LOCK_PATH} and is using the local SLURM cluster")
    try:
        if _missing_binaries():
            say("installing slurm-wlm, munge and mariadb with apt-get (a few minutes)")
            installed = _cluster("install", timeout_s=900)
            if installed.returncode != 0:
                skip_or_fail(f"apt-get could not install SLURM:\n{installed.stderr[-3000:]}")
        say("starting slurmctld, slurmd and slurmdbd")
        started = _cluster("start", timeout_s=300)
        if started.returncode != 0:
            _cluster("stop", timeout_s=120)
            pytest.fail(f"cluster.sh start failed (rc={started.returncode}):\n{started.stdout}\n{started.stderr}",
                        pytrace=False)
        try:
            yield
        finally:
            stopped = _cluster("stop", timeout_s=120)
            if stopped.returncode != 0:
                pytest.fail(f"cluster.sh stop failed:\n{stopped.stderr}", pytrace=False)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
