"""Rule evaluate: lm-eval on one checkpoint and one task's test split (logic: scsdpo_verl.eval.runner)."""

import logging
import sys
from pathlib import Path

from scsdpo_verl.eval.runner import lm_eval_task_name, run_lm_eval, sampling_settings

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
sys.stderr = open(smk.log[0], "a")  # noqa: SIM115  (lives as long as the job)
settings = smk.params.settings
spec = smk.params.task_spec
results = run_lm_eval(
    smk.params.model_path,
    lm_eval_task_name(spec["kind"], spec.get("domain")),
    smk.input.test,
    Path(smk.output.results).parent,
    seed=settings["seed"] + int(smk.wildcards.seed),
    **sampling_settings(settings),
)
logging.info("results: %s", {k: v for k, v in results.items() if k != "samples"})
