"""Fixtures shared across test packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.slurm.slurm_tools import DAG_TIMEOUT_S, SMOKE_ARGS, Run, console, run_snakemake


@pytest.fixture(scope="session")
def smoke_local_run(tmp_path_factory, request) -> tuple[Path, Run]:
    """The smoke DAG run locally (`--cores 2`) in a temporary directory: the reference for the SLURM run.

    Session-scoped: the workflow's smoke test and the SLURM comparison share this one run. Its progress is
    printed on the terminal (it takes minutes).
    """
    workdir = tmp_path_factory.mktemp("smoke_local")
    run = run_snakemake([*SMOKE_ARGS, "--directory", str(workdir), "--cores", "2"],
                        log_path=workdir / "snakemake.log", timeout_s=DAG_TIMEOUT_S,
                        progress=console(request.config, "smoke DAG, local"))
    if run.returncode != 0:
        pytest.fail(f"the local smoke run failed (rc={run.returncode}):\n{run.log[-5000:]}", pytrace=False)
    return workdir, run
