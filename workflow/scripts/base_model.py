"""Rule base_model: tokenizer + tiny model + warm start (logic: scsdpo_verl.local.models.make_base)."""

import json
import logging
import shutil
import sys
from pathlib import Path

from scsdpo_verl.local.models import make_base

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(message)s", force=True)
sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job): progress bar and warnings to the log
settings = smk.params.settings
# the warm start's resumable state lives next to the output directory: Snakemake deletes an interrupted job's
# outputs before rerunning it, and the rerun continues from this state (removed once the base is written)
checkpoint_dir = Path(smk.output.model).with_name("warm_start_state")
report = make_base(
    smk.params.spec["name"],
    smk.output.model,
    sft_steps=settings["warm_start_steps"],
    sft_batch=settings["warm_start_batch"],
    sft_lr=settings["warm_start_lr"],
    teacher_fraction=settings["teacher_fraction"],
    copy_drill_steps=settings["copy_drill_steps"],
    teacher_first_steps=settings["teacher_first_steps"],
    copy_target_loss=settings["copy_target_loss"],
    max_extra_drill_steps=settings["max_extra_drill_steps"],
    bf16=settings["bf16"],
    number_tokens=settings["number_tokens"],
    eval_questions=settings["report_questions"],
    seed=settings["seed"],
    threads=smk.threads,
    checkpoint_dir=checkpoint_dir,
)
shutil.copyfile(Path(smk.output.model) / "base_report.json", smk.output.report)
logging.info("base model report: %s", json.dumps(report))
