"""Command line: ``python -m scsdpo_verl.local.train --config FILE [key=value ...] [--resume]``.

Keys are the fields of ``scsdpo_verl.local.config.TrainConfig``; overrides win over the file.
``run_workflow_job``: one run of the workflow's rule train (or of a train_group job).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, load_config


def run_workflow_job(effective: Mapping[str, Any], final_dir: str | Path) -> dict[str, Any]:
    """Prepare ``effective["run_dir"]`` (resume an interrupted run of the same config, move a different one aside:
    ``pipeline.prepare_run_dir``), train, copy the final policy to ``final_dir``; returns the summary."""
    from scsdpo_verl.pipeline import export_final, prepare_run_dir

    from .trainer import train

    resume = prepare_run_dir(effective["run_dir"], effective)
    logging.info("run %s (resume=%s)", effective["run_dir"], resume)
    cfg = load_config(None, [f"{k}={v}" for k, v in {**effective, "resume": resume}.items()])
    summary = train(cfg)
    export_final(cfg.run_dir, summary, final_dir)
    logging.info("summary: %s", json.dumps(summary)[:2000])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML or JSON file of config keys")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *(["resume=true"] if args.resume else [])]
    try:
        cfg = load_config(args.config, overrides)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .trainer import train  # heavy imports only after the config is valid

    summary = train(cfg)
    print(json.dumps(summary["final"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
