"""Rule task_data: write one task's verl parquet splits (logic: scsdpo_verl.pipeline.write_task_data)."""

import json
import logging

from scsdpo_verl.pipeline import write_task_data

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)  # noqa: F821
smk = snakemake  # noqa: F821
reference = smk.input[0] if len(smk.input) else None
counts = write_task_data(smk.params.spec, smk.output.train, smk.output.test, reference_dir=reference)
logging.info("rows written: %s", counts)
with open(smk.output.counts, "w") as f:
    json.dump(counts, f, indent=2)
