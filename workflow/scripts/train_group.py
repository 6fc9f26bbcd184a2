"""Rule train_group (group_jobs: model_task, local backend): the main grid's runs of one model x task, in turn, in
this process; each with its own log and benchmark file (logic: scsdpo_verl.local.train.run_workflow_job)."""

import contextlib
import logging
import sys

from scsdpo_verl.local.train import run_workflow_job
from scsdpo_verl.pipeline import benchmarked

smk = snakemake  # noqa: F821
for run in smk.params.runs:
    # the progress bar, warnings and the console tracker's per-step lines go to the run's log, as in rule train
    with open(run["log"], "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, force=True)
        with benchmarked(run["benchmark"]):
            run_workflow_job(run["train_config"], run["final"])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)  # the run's log is closed now
