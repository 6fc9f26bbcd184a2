"""Rule figures: the suite's 9 figures as PNG + PDF (logic: scsdpo_verl.analysis.make)."""

import logging

from scsdpo_verl.analysis.make import make_figures

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
written = make_figures(smk.params.workflow_config, smk.params.results_dir, smk.params.figures_dir,
                       published_file=smk.input.published)
logging.info("figures: %s", written)
