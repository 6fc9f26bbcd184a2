"""Rule train (backend local): prepare/resume the run dir, train, export the final policy.

Logic: scsdpo_verl.local.train.run_workflow_job (scsdpo_verl.pipeline's run dir and export, the local trainer).
"""

import logging
import sys

from scsdpo_verl.local.train import run_workflow_job

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
# the progress bar, warnings and the console tracker's per-step lines go to the rule's log, not the terminal
sys.stdout = sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job)
run_workflow_job(smk.params.train_config, smk.output.final)
