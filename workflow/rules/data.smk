# Task data: synthetic twins generated here; real tasks from the SDPO reference's published splits or local files.


rule reference_splits:
    """The SDPO reference's processed SciKnowEval/tool-use splits at a pinned commit, SHA-256 verified."""
    output:
        directory(f"{RESULTS}/data/reference"),
    params:
        local_dir=config["reference_data"]["local_dir"],
        commit=config["reference_data"]["commit"],
    log:
        f"{RESULTS}/logs/reference_splits.log",
    benchmark:
        f"{RESULTS}/benchmarks/reference_splits.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/reference_splits.py"


rule task_data:
    """One task's train/test splits as verl RL parquet (data_source, prompt, ability, reward_model, extra_info)."""
    input:
        reference_dir_input,
    output:
        train=f"{RESULTS}/data/{{task}}/train.parquet",
        test=f"{RESULTS}/data/{{task}}/test.parquet",
        counts=f"{RESULTS}/data/{{task}}/counts.json",
    params:
        spec=lambda wildcards: config["tasks"][wildcards.task],
    log:
        f"{RESULTS}/logs/task_data/{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/task_data/{{task}}.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/task_data.py"
