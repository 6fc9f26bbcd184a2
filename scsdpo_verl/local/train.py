"""Command line: ``python -m scsdpo_verl.local.train --config FILE [key=value ...] [--resume]``.

Keys are the fields of ``scsdpo_verl.local.config.TrainConfig``; overrides win over the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import ConfigError, load_config


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
