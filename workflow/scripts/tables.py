"""Rule tables: main, ablation and cost tables as CSV + Markdown + LaTeX (logic: scsdpo_verl.analysis.make)."""

import logging
from pathlib import Path

from scsdpo_verl.analysis.make import make_tables

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
written = make_tables(smk.params.workflow_config, smk.params.results_dir, Path(smk.output.main).parent)
logging.info("tables: %s", written)
