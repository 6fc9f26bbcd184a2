"""Rule expected_comparison: this run's tables beside the expected ones (logic: scsdpo_verl.analysis.expected)."""

import logging

from scsdpo_verl.analysis.expected import compare_tables, this_machine

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
tables = {"main_table": smk.input.main, "ablation_table": smk.input.ablation, "base_models": smk.input.base_models}
rows = compare_tables(tables, smk.params.expected, smk.output.csv, smk.output.md, machine=this_machine())
logging.info("%d of %d cells differ from %s", sum(bool(r["flag"]) for r in rows), len(rows), smk.params.expected)
