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
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{task}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/{{task}}/{{method}}/seed{{seed}}.tsv"
    conda:
        "../../envs/cpu.yaml" if config["evaluation"]["backend"] == "hf" else "../../envs/gpu.yaml"
    script:
        "../scripts/evaluate.py"
