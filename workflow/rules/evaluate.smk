# Evaluation with lm-eval (hf backend on CPU, vllm on GPU): mean@k and maj@k on each task's test split,
# for the base model and every final checkpoint, offline.


rule evaluate:
    input:
        eval_model_input,
        test=f"{RESULTS}/data/{{task}}/test.parquet",
    output:
        results=f"{RESULTS}/eval/{{model}}/{{task}}/{{method}}/seed{{seed}}/results.json",
        samples=f"{RESULTS}/eval/{{model}}/{{task}}/{{method}}/seed{{seed}}/samples.jsonl",
    params:
        model_path=eval_model_path,
        task_spec=lambda wildcards: config["tasks"][wildcards.task],
        settings=config["evaluation"],
    threads: 1
    priority: EVALUATE_PRIORITY
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{task}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/{{task}}/{{method}}/seed{{seed}}.tsv"
    conda:
        "../../envs/cpu.yaml" if config["evaluation"]["backend"] == "hf" else "../../envs/gpu.yaml"
    script:
        "../scripts/evaluate.py"


if config["group_jobs"] == "model_task":
    # one process per model x task (helpers: common.smk): the base model, then the main grid's checkpoints (the
    # ablation's keep rule evaluate); the same outputs, per-checkpoint benchmark files included, as rule evaluate's
    rule evaluate_group:
        input:
            models=lambda wildcards: [path for w in grouped_wildcards(wildcards) for path in eval_model_input(w)],
            test=f"{RESULTS}/data/{{task}}/test.parquet",
        output:
            results=[f"{RESULTS}/eval/{{model}}/{{task}}/{m}/seed{s}/results.json" for m, s in GROUPED_EVALUATIONS],
            samples=[f"{RESULTS}/eval/{{model}}/{{task}}/{m}/seed{s}/samples.jsonl" for m, s in GROUPED_EVALUATIONS],
            benchmarks=[
                f"{RESULTS}/benchmarks/evaluate/{{model}}/{{task}}/{m}/seed{s}.tsv" for m, s in GROUPED_EVALUATIONS
            ],
        params:
            checkpoints=grouped_checkpoints,
            task_spec=lambda wildcards: config["tasks"][wildcards.task],
            settings=config["evaluation"],
        threads: 1
        log:
            f"{RESULTS}/logs/evaluate_group/{{model}}/{{task}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate_group/{{model}}/{{task}}.tsv"
        conda:
            "../../envs/cpu.yaml"
        script:
            "../scripts/evaluate_group.py"

    ruleorder: evaluate_group > evaluate
