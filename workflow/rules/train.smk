# RL training: one job per (model, task, method, seed). The backend comes from the config.


if config["backend"] == "local":

    rule train:
        """The local small-model trainer; resumes from the run's last checkpoint after an interruption."""
        input:
            base_model_input,
            train=f"{RESULTS}/data/{{task}}/train.parquet",
            test=f"{RESULTS}/data/{{task}}/test.parquet",
        output:
            final=directory(f"{RESULTS}/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}/final"),
            summary=f"{RESULTS}/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}/summary.json",
        params:
            # the effective config is a param: changing it re-runs the job (never reuses stale results)
            train_config=lambda wildcards, threads: train_config(wildcards, threads),
        threads: 1
        priority: train_priority
        log:
            f"{RESULTS}/logs/train/{{model}}/{{task}}/{{method}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{{model}}/{{task}}/{{method}}/seed{{seed}}.tsv"
        conda:
            "../../envs/cpu.yaml"
        script:
            "../scripts/train_local.py"

    if config["group_jobs"] == "model_task":

        rule train_group:
            """One process per model x task trains the main grid's runs in turn (helpers: common.smk); each run
            as rule train runs it (its own run dir, resume, log and benchmark file), the imports paid once."""
            input:
                base_model_input,
                train=f"{RESULTS}/data/{{task}}/train.parquet",
                test=f"{RESULTS}/data/{{task}}/test.parquet",
            output:
                final=[directory(f"{RESULTS}/runs/{{model}}/{{task}}/{m}/seed{s}/final") for m, s in GROUPED_RUNS],
                summary=[f"{RESULTS}/runs/{{model}}/{{task}}/{m}/seed{s}/summary.json" for m, s in GROUPED_RUNS],
                benchmarks=[f"{RESULTS}/benchmarks/train/{{model}}/{{task}}/{m}/seed{s}.tsv" for m, s in GROUPED_RUNS],
            params:
                runs=grouped_runs,
            threads: 1
            log:
                runs=[f"{RESULTS}/logs/train/{{model}}/{{task}}/{m}/seed{s}.log" for m, s in GROUPED_RUNS],
            benchmark:
                f"{RESULTS}/benchmarks/train_group/{{model}}/{{task}}.tsv"
            conda:
                "../../envs/cpu.yaml"
            script:
                "../scripts/train_group.py"

        ruleorder: train_group > train

else:

    rule train:
        """verl 0.9.1 + the scsdpo plugin; on SLURM, Ray spans the job's nodes (workflow/scripts/ray_slurm.sh)."""
        input:
            base_model_input,
            train=f"{RESULTS}/data/{{task}}/train.parquet",
            test=f"{RESULTS}/data/{{task}}/test.parquet",
        output:
            final=directory(f"{RESULTS}/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}/final"),
            summary=f"{RESULTS}/runs/{{model}}/{{task}}/{{method}}/seed{{seed}}/summary.json",
        params:
            run_dir=run_dir,
            model_path=base_model_path,
            algorithm=lambda wildcards: method_spec(wildcards.method)["algorithm"],
            overrides=lambda wildcards: verl_overrides(wildcards),
            launcher=workflow.source_path("../scripts/ray_slurm.sh"),
            # CPU mode is verl's platform override, set before Python starts (scsdpo_verl/verl_plugin/cpu.py)
            platform="export VERL_PLATFORM=cpu;" if config["verl"]["cpu"] else "",
            python=launcher_python(),
        # a CPU-mode run starts a Ray cluster of its own (~6 GB): one at a time, on every core
        threads: workflow.cores if config["verl"]["cpu"] else 1
        priority: train_priority
        resources:
            nodes=config["verl"]["nodes"],
            gpus_per_node=config["verl"]["gpus_per_node"],
        log:
            f"{RESULTS}/logs/train/{{model}}/{{task}}/{{method}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{{model}}/{{task}}/{{method}}/seed{{seed}}.tsv"
        conda:
            "../../envs/cpu.yaml" if config["verl"]["cpu"] else "../../envs/gpu.yaml"
        shell:
            "{params.platform} PYTHON={params.python} bash {params.launcher} {params.algorithm} {params.run_dir} {output.final} {output.summary} "
            "data.train_files={input.train} data.val_files={input.test} "
            "actor_rollout_ref.model.path={params.model_path} trainer.default_local_dir={params.run_dir} "
            "{params.overrides} > {log} 2>&1"


