# Tables (CSV + Markdown + LaTeX) and the suite's 8 figures (PNG + PDF), all marked for `snakemake --report`.
from scsdpo_verl.pipeline import FIGURE_NAMES

# captions live with the analysis code (scsdpo_verl/analysis/report/), relative to this file
CAPTIONS = "../../scsdpo_verl/analysis/report"
RUN_SUMMARIES = [f"{RESULTS}/runs/{m}/{t}/{meth}/seed{s}/summary.json" for (m, t, meth, s) in RUNS]


rule tables:
    input:
        evals=evaluated_runs(),
        summaries=RUN_SUMMARIES,
    output:
        main=report(f"{RESULTS}/tables/main_table.csv", caption=f"{CAPTIONS}/main_table.rst", category="Tables"),
        ablation=report(
            f"{RESULTS}/tables/ablation_table.csv", caption=f"{CAPTIONS}/ablation_table.rst", category="Tables"
        ),
        cost=report(f"{RESULTS}/tables/cost_table.csv", caption=f"{CAPTIONS}/cost_table.rst", category="Tables"),
        renderings=expand(
            f"{RESULTS}/tables/{{name}}.{{ext}}", name=["main_table", "ablation_table", "cost_table"], ext=["md", "tex"]
        ),
    params:
        results_dir=lambda wildcards, input: results_dir_of(input.summaries[0]),
        workflow_config=config,
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/tables.py"


rule figures:
    input:
        evals=evaluated_runs(),
        summaries=RUN_SUMMARIES,
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
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/figures.py"
