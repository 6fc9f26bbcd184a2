"""Rule reference_splits: the SDPO reference's pinned splits (logic: scsdpo_verl.pipeline.obtain_reference_splits)."""

import logging

from scsdpo_verl.pipeline import obtain_reference_splits

smk = snakemake  # noqa: F821
logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
files = obtain_reference_splits(smk.output[0], local_dir=smk.params.local_dir, commit=smk.params.commit)
logging.info("verified %d reference files: %s", len(files), [str(f) for f in files])
