"""Command line: ``python -m scsdpo_verl.eval MODEL_DIR TASK DATA OUT_DIR [options]`` (see runner.run_lm_eval)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from scsdpo_verl.eval.runner import BACKENDS, run_lm_eval


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scsdpo_verl.eval", description=__doc__)
    parser.add_argument("model_dir", help="a local Hugging Face model directory")
    parser.add_argument("task", help="task name, e.g. synthetic_science, tooluse, sciknoweval_chemistry")
    parser.add_argument("data", help="the test rows (.parquet or .jsonl, verl RL layout)")
    parser.add_argument("out_dir", help="where results.json and samples.jsonl go")
    parser.add_argument("--backend", choices=BACKENDS, default="hf")
    parser.add_argument("--repeats", type=int, default=16, help="samples per question (k of mean@k, maj@k)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N questions")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-gen-toks", type=int, default=1024)
    parser.add_argument("--batch-size", default="16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    batch_size = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    results = run_lm_eval(args.model_dir, args.task, args.data, args.out_dir, backend=args.backend,
                          repeats=args.repeats, limit=args.limit, seed=args.seed, temperature=args.temperature,
                          top_p=args.top_p, max_gen_toks=args.max_gen_toks, batch_size=batch_size,
                          device=args.device)
    print(json.dumps(results.get("metrics", {}), indent=2))


if __name__ == "__main__":
    main()
