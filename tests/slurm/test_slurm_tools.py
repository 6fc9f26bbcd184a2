"""The SLURM tests' pure helpers and the test profile, on any machine (no cluster, no root)."""

import pytest
import yaml

from .slurm_tools import (
    CLUSTER_ENV,
    LOCAL_OVERRIDES,
    SLURM_PROFILE,
    merge_profile,
    parse_mem_mb,
    parse_minutes,
    parse_sacct,
    parse_tres,
    requested_resources,
    rule_of,
    run_snakemake,
    wildcards_of,
)

# the node cluster.sh declares on the 2-core CI machine: CPUs, MB of memory (RealMemory floor), fake GPUs
NODE_CPUS, NODE_MEM_MB, NODE_GPUS = 2, 20000, 2


def test_parse_sacct_lines_by_field():
    text = "7|rule_train_wildcards_m_t_grpo_0|COMPLETED\n\n8|rule_tables|CANCELLED by 0\n"
    rows = parse_sacct(text, fields=("JobIDRaw", "Comment", "State"))
    assert rows == [{"JobIDRaw": "7", "Comment": "rule_train_wildcards_m_t_grpo_0", "State": "COMPLETED"},
                    {"JobIDRaw": "8", "Comment": "rule_tables", "State": "CANCELLED by 0"}]
    with pytest.raises(ValueError, match="line 1: 2 fields, expected 3"):
        parse_sacct("7|x", fields=("JobIDRaw", "Comment", "State"))


def test_rule_and_wildcards_of_a_job_comment():
    assert rule_of("rule_task_data_wildcards_synthetic_science") == "task_data"
    assert wildcards_of("rule_task_data_wildcards_synthetic_science") == "synthetic_science"
    assert rule_of("rule_tables") == "tables" and wildcards_of("rule_tables") == ""
    with pytest.raises(ValueError):
        rule_of("wrap")


@pytest.mark.parametrize(("text", "mb"), [("2000M", 2000), ("2G", 2048), ("1.5G", 1536), ("100Mn", 100),
                                          ("512K", 0), ("8000", 8000)])
def test_parse_mem_mb(text, mb):
    assert parse_mem_mb(text) == mb


@pytest.mark.parametrize(("text", "minutes"), [("00:05:00", 5), ("06:00:00", 360), ("1-02:00:00", 1560),
                                               ("10:00", 10), ("00:00:30", 1)])
def test_parse_minutes(text, minutes):
    assert parse_minutes(text) == minutes


def test_parse_tres():
    assert parse_tres("billing=1,cpu=1,gres/gpu:fake=1,gres/gpu=1,mem=120M,node=1") == {
        "billing": "1", "cpu": "1", "gres/gpu:fake": "1", "gres/gpu": "1", "mem": "120M", "node": "1"}


def test_merge_profile_merges_resource_tables_and_replaces_the_rest():
    base = {"jobs": 50, "retries": 2, "default-resources": {"mem_mb": 8000, "runtime": 60},
            "set-resources": {"train": {"gpu": 4, "runtime": 360}, "tables": {"runtime": 10}}}
    overrides = {"jobs": 2, "default-resources": {"mem_mb": 1000},
                 "set-resources": {"train": {"gpu": 1}, "evaluate": {"gpu": 1}}}
    merged = merge_profile(base, overrides)
    assert merged == {"jobs": 2, "retries": 2, "default-resources": {"mem_mb": 1000, "runtime": 60},
                      "set-resources": {"train": {"gpu": 1, "runtime": 360}, "tables": {"runtime": 10},
                                        "evaluate": {"gpu": 1}}}
    assert base["set-resources"]["train"]["gpu"] == 4  # the base is not modified


def _profiles():
    real = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    overrides = yaml.safe_load(LOCAL_OVERRIDES.read_text())
    return real, overrides, merge_profile(real, overrides)


def test_overrides_only_adjust_rules_and_keys_the_real_profile_has():
    real, overrides, _ = _profiles()
    for rule, resources in overrides.get("set-resources", {}).items():
        assert rule in real["set-resources"], f"{LOCAL_OVERRIDES}: rule {rule} is not in the real profile"
        assert set(resources) <= set(real["set-resources"][rule]) | {"cpus_per_task"}, rule
    # the account, partitions, run times and retries stay the real profile's
    assert "default-resources" not in overrides or not {"slurm_account", "slurm_partition", "runtime"} & set(
        overrides["default-resources"])
    assert all("slurm_partition" not in r and "runtime" not in r for r in overrides["set-resources"].values())
    assert not {"retries", "slurm-status-command", "executor"} & set(overrides)


def test_merged_profile_fits_the_test_node_and_keeps_the_gpu_path():
    _, _, merged = _profiles()
    for rule in [*merged["set-resources"], "task_data"]:
        asked = requested_resources(merged, rule, CLUSTER_ENV)
        assert asked.get("cpus_per_task", 1) <= NODE_CPUS, rule
        assert asked["mem_mb"] <= NODE_MEM_MB, rule
        assert asked.get("gpu", 0) <= NODE_GPUS, rule
        assert asked["slurm_account"] == "ci"
    train = requested_resources(merged, "train", CLUSTER_ENV)
    assert (train["slurm_partition"], train["gpu"], train["gpu_model"]) == ("gpu", 1, "fake")
    assert requested_resources(merged, "tables", CLUSTER_ENV)["slurm_partition"] == "cpu"


TWO_STEPS = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "sleep 1; echo a > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "sleep 1; cp {input} {output}"
"""


def test_run_snakemake_reports_start_progress_and_end(tmp_path):
    # what the long smoke/SLURM runs print on the terminal instead of staying silent for minutes
    (tmp_path / "Snakefile").write_text(TWO_STEPS)
    lines: list[str] = []
    run = run_snakemake(["--cores", "1", "--workflow-profile", "none"], cwd=tmp_path, log_path=tmp_path / "log",
                        timeout_s=120, progress=lines.append)
    assert run.returncode == 0, run.log
    assert lines[0] == f"snakemake started, log: {tmp_path / 'log'}"
    steps = [line.rsplit(" (", 1)[0] for line in lines[1:-1]]  # without the elapsed seconds
    assert steps == ["1 of 3 steps (33%) done", "2 of 3 steps (67%) done", "3 of 3 steps (100%) done"]
    assert lines[-1].startswith("snakemake exited with 0 after ")
