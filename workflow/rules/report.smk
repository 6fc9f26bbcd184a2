# Tables (CSV + Markdown + LaTeX: main, gains, ablation, cost, paper comparison, tool-use scorers) and the suite's 9 figures (PNG + PDF), all marked for `snakemake --report`.
from scsdpo_verl.pipeline import FIGURE_NAMES, TABLE_NAMES

# captions live with the analysis code (scsdpo_verl/analysis/report/), relative to this file
CAPTIONS = "../../scsdpo_verl/analysis/report"
RUN_SUMMARIES = [f"{RESULTS}/runs/{m}/{t}/{meth}/seed{s}/summary.json" for (m, t, meth, s) in RUNS]
# what the tables measure besides the results: every training and evaluation job's Snakemake benchmark (the cost
# table), the task data counts (the tool-use scorer table) and the published numbers (config reporting.published)
TRAIN_BENCHMARKS = [f"{RESULTS}/benchmarks/train/{m}/{t}/{meth}/seed{s}.tsv" for (m, t, meth, s) in RUNS]
EVAL_BENCHMARKS = [f"{RESULTS}/benchmarks/evaluate/{m}/{t}/{meth}/seed{s}.tsv" for (m, t, meth, s) in evaluated_jobs()]
TASK_COUNTS = [f"{RESULTS}/data/{task}/counts.json" for task in config["tasks"]]


rule tables:
    input:
        evals=evaluated_runs(),
        summaries=RUN_SUMMARIES,
        train_benchmarks=TRAIN_BENCHMARKS,
        eval_benchmarks=EVAL_BENCHMARKS,
        task_counts=TASK_COUNTS,
        published=published_file(),
    output:
        main=report(f"{RESULTS}/tables/main_table.csv", caption=f"{CAPTIONS}/main_table.rst", category="Tables"),
        gains=report(f"{RESULTS}/tables/gains.csv", caption=f"{CAPTIONS}/gains.rst", category="Tables"),
        ablation=report(
            f"{RESULTS}/tables/ablation_table.csv", caption=f"{CAPTIONS}/ablation_table.rst", category="Tables"
        ),
        cost=report(f"{RESULTS}/tables/cost_table.csv", caption=f"{CAPTIONS}/cost_table.rst", category="Tables"),
        paper=report(
            f"{RESULTS}/tables/paper_comparison.csv", caption=f"{CAPTIONS}/paper_comparison.rst", category="Tables"
        ),
        scorers=report(
            f"{RESULTS}/tables/tooluse_scorers.csv", caption=f"{CAPTIONS}/tooluse_scorers.rst", category="Tables"
        ),
        renderings=expand(f"{RESULTS}/tables/{{name}}.{{ext}}", name=TABLE_NAMES, ext=["md", "tex"]),
    params:
        results_dir=lambda wildcards, input: results_dir_of(input.summaries[0]),
        workflow_config=config,
    log:
        f"{RESULTS}/logs/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/tables.py"


rule figures:
    input:
        evals=evaluated_runs(),
        summaries=RUN_SUMMARIES,
        published=published_file(),
    output:
        [
            report(f"{FIGURES}/{name}.png", caption=f"{CAPTIONS}/{name}.rst", category="Figures")
            for name in FIGURE_NAMES
        ],
        [f"{FIGURES}/{name}.pdf" for name in FIGURE_NAMES],
    params:
        results_dir=lambda wildcards, input: results_dir_of(input.summaries[0]),
        figures_dir=lambda wildcards, output: os.path.dirname(output[0]),
        workflow_config=config,
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/figures.py"
