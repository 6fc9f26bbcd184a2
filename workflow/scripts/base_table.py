"""Rule base_table: the base models' competence and self-teacher table (logic: scsdpo_verl.analysis.base_models)."""

import logging

from scsdpo_verl.analysis.base_models import write_base_table

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
rows = write_base_table(dict(zip(smk.params.models, smk.input.reports, strict=True)), smk.output.csv, smk.output.md)
logging.info("base table: %d rows", len(rows))
