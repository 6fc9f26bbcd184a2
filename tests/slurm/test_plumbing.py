"""The plumbing on its own: a two-rule toy workflow through snakemake-executor-plugin-slurm on the local cluster.

One rule on the `cpu` partition, one on `gpu` asking for a (fake) GPU; both must run as SLURM jobs (their outputs
record SLURM's job ids) and `sacct` must show them COMPLETED with exactly the resources the rules asked for.
"""

from pathlib import Path

import pytest

from .slurm_tools import (
    ACCOUNT,
    cluster_env,
    parse_mem_mb,
    parse_minutes,
    parse_tres,
    rule_of,
    run_snakemake,
    sacct_jobs,
)

pytestmark = pytest.mark.slow

TOY_SNAKEFILE = """
rule all:
    input: "gpu.txt"

rule cpu_step:
    output: "cpu.txt"
    threads: 1
    resources: mem_mb=150, runtime=4
    shell: "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION none > {output}"

rule gpu_step:
    input: "cpu.txt"
    output: "gpu.txt"
    resources: slurm_partition="gpu", gpu=1, gpu_model="fake", mem_mb=120, runtime=3
    shell: "cat {input} > {output}; echo $SLURM_JOB_ID $SLURM_JOB_PARTITION $CUDA_VISIBLE_DEVICES >> {output}"
"""
# rule -> (partition, cpus, mem MB, time limit in minutes, GPUs)
REQUESTED = {"cpu_step": ("cpu", 1, 150, 4, 0), "gpu_step": ("gpu", 1, 120, 3, 1)}


def test_two_rules_run_as_slurm_jobs_with_their_resources(slurm_cluster, tmp_path: Path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    run = run_snakemake(
        ["--executor", "slurm", "--jobs", "2", "--default-resources", f"slurm_account={ACCOUNT}",
         "slurm_partition=cpu", "--slurm-init-seconds-before-status-checks", "1"],
        cwd=tmp_path, env=cluster_env(), log_path=tmp_path / "snakemake.log", timeout_s=240)
    assert run.returncode == 0, run.log[-5000:]

    # each output line: the SLURM job id, the partition and the visible GPU the job ran with
    lines = (tmp_path / "gpu.txt").read_text().splitlines()
    ran = dict(zip(("cpu_step", "gpu_step"), (line.split() for line in lines)))
    assert ran["cpu_step"][1:] == ["cpu", "none"]
    assert ran["gpu_step"][1] == "gpu" and ran["gpu_step"][2] in ("0", "1")

    rows = sacct_jobs(tmp_path)
    print("\n".join("|".join(row.values()) for row in rows))  # shown with pytest -s
    assert sorted(rule_of(r["Comment"]) for r in rows) == ["cpu_step", "gpu_step"]
    for row in rows:
        rule = rule_of(row["Comment"])
        partition, cpus, mem_mb, minutes, gpus = REQUESTED[rule]
        assert row["JobIDRaw"] == ran[rule][0]
        assert (row["State"], row["ExitCode"]) == ("COMPLETED", "0:0")
        assert (row["Partition"], row["Account"]) == (partition, ACCOUNT)
        assert int(row["ReqCPUS"]) == cpus
        assert parse_mem_mb(row["ReqMem"]) == mem_mb
        assert parse_minutes(row["Timelimit"]) == minutes
        assert int(parse_tres(row["AllocTRES"]).get("gres/gpu", 0)) == gpus
        if gpus:
            assert parse_tres(row["AllocTRES"])["gres/gpu:fake"] == str(gpus)
