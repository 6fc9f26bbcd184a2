"""Rule evaluate_group (group_jobs: model_task): lm-eval on the base model and every main-grid checkpoint of
one model x task, in turn, in this process (logic: scsdpo_verl.eval.runner.evaluate_in_turn)."""

import logging
import sys

from scsdpo_verl.eval.runner import evaluate_in_turn, lm_eval_task_name, sampling_settings

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job)
settings = smk.params.settings
spec = smk.params.task_spec
results = evaluate_in_turn(
    smk.params.checkpoints,
    lm_eval_task_name(spec["kind"], spec.get("domain")),
    smk.input.test,
    **sampling_settings(settings),
)
for checkpoint, result in zip(smk.params.checkpoints, results, strict=True):
    logging.info("%s: %s", checkpoint["out_dir"], result["metrics"])
