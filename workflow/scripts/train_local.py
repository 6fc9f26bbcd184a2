"""Rule train (backend local): prepare/resume the run dir, train, export the final policy.

Logic: scsdpo_verl.pipeline (run dir, export) and scsdpo_verl.local.trainer (the RL loop).
"""

import json
import logging
import sys

from scsdpo_verl.local.config import load_config
from scsdpo_verl.local.trainer import train
from scsdpo_verl.pipeline import export_final, prepare_run_dir

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
# the progress bar, warnings and the console tracker's per-step lines go to the rule's log, not the terminal
sys.stdout = sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job)
effective = dict(smk.params.train_config)
resume = prepare_run_dir(effective["run_dir"], effective)
logging.info("run %s (resume=%s)", effective["run_dir"], resume)
cfg = load_config(None, [f"{k}={v}" for k, v in {**effective, "resume": resume}.items()])
summary = train(cfg)
export_final(cfg.run_dir, summary, smk.output.final)
logging.info("summary: %s", json.dumps(summary)[:2000])
