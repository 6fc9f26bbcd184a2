# scsdpo: GRPO vs SDPO vs SC-SDPO, from data to tables, figures and report.
#   snakemake --cores all                                    # embedded CPU default (config/default.yaml)
#   snakemake --cores all --configfile config/smoke.yaml     # the same DAG in a few minutes (CI)
#   snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm   # the real thing
from snakemake.utils import min_version

min_version("9.0")


# the embedded default, unless a --configfile is given (it REPLACES the default, never merges);
# --config key=value overrides apply on top of whichever of the two is used
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/default.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
