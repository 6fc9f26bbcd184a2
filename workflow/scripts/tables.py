"""Rule tables: main, ablation, cost, paper-comparison and tool-use scorer tables as CSV + Markdown + LaTeX.

Logic: scsdpo_verl.analysis.make.
"""

import logging
from pathlib import Path

from scsdpo_verl.analysis.make import make_tables

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
written = make_tables(smk.params.workflow_config, smk.params.results_dir, Path(smk.output.main).parent,
                      published_file=smk.input.published)
logging.info("tables: %s", written)
