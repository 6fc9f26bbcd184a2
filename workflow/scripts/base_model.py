"""Rule base_model: the shipped base if its recipe is this config's, else tokenizer + tiny model + warm start
(logic: scsdpo_verl.local.shipped_bases.provide_base, scsdpo_verl.local.models.make_base)."""

import json
import logging
import shutil
import sys
from pathlib import Path

from scsdpo_verl.local.shipped_bases import provide_base

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(message)s", force=True)
sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job): progress bar and warnings to the log
# the warm start's resumable state lives next to the output directory: Snakemake deletes an interrupted job's
# outputs before rerunning it, and the rerun continues from this state (removed once the base is written)
checkpoint_dir = Path(smk.output.model).with_name("warm_start_state")
report = provide_base(smk.params.spec, smk.params.settings, smk.output.model, shipped_dir=smk.params.shipped_dir,
                      threads=smk.threads, checkpoint_dir=checkpoint_dir)
shutil.copyfile(Path(smk.output.model) / "base_report.json", smk.output.report)
logging.info("base model report: %s", json.dumps(report))
