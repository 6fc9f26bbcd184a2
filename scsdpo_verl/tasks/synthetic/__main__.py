"""Generate a synthetic task: print its level counts and a few scored examples, optionally write parquet.

    python -m scsdpo_verl.tasks.synthetic synthetic_science --n 2000 --seed 0 --split train --examples 2
    python -m scsdpo_verl.tasks.synthetic synthetic_tooluse --n 2000 --out data/synthetic_tooluse/train.parquet
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from scsdpo_verl.tasks import compute_score
from scsdpo_verl.tasks.schema import write_parquet
from scsdpo_verl.tasks.synthetic import TASKS, generate


def wrong_answer(row: dict) -> str:
    """A plausible wrong response: the worked solution with another letter, or its first call sent to a distractor."""
    solution = row["extra_info"]["solution"]
    if row["ability"] == "mcq":
        gold = row["reward_model"]["ground_truth"]
        other = "B" if gold == "A" else "A"
        return solution.replace(f"<answer>{gold}</answer>", f"<answer>{other}</answer>")
    needed = re.findall(r"^Action: (\w+)", solution, flags=re.M)
    shown = re.findall(r"^(\w+)\(", row["prompt"][-1]["content"], flags=re.M)
    distractors = [name for name in shown if name not in needed]
    if not distractors:  # level 1 lists only the needed tool: get an argument's value wrong instead
        return re.sub(r':(\d+|"\w+")}', r':"?"}', solution, count=1)
    return solution.replace(f"Action: {needed[0]}", f"Action: {distractors[0]}", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--examples", type=int, default=2, help="print this many scored examples")
    parser.add_argument("--out", help="write the rows to this parquet file")
    args = parser.parse_args()

    rows = generate(args.task, args.n, args.seed, split=args.split)
    counts = Counter(r["extra_info"]["difficulty"] for r in rows)
    print(f"{args.task} n={args.n} seed={args.seed} split={args.split}")
    print("rows per difficulty level:", dict(sorted(counts.items())))
    levels = sorted(counts)
    for k in range(args.examples):
        level = levels[(k * (len(levels) - 1)) // max(args.examples - 1, 1)]  # spread over the levels
        row = next(r for r in rows if r["extra_info"]["difficulty"] == level)
        print(f"\n--- example {k + 1}: level {level}, {row['extra_info']['question_id']}")
        for message in row["prompt"]:
            print(f"[{message['role']}]\n{message['content']}")
        for label, response in (("worked solution", row["extra_info"]["solution"]), ("wrong", wrong_answer(row))):
            result = compute_score(row["data_source"], response, row["reward_model"]["ground_truth"])
            print(f"[answer: {label}] score={result['score']} pred={result['pred']!r}\n{response}")
            if result["feedback"]:
                print(f"  feedback: {result['feedback']}")
    if args.out:
        print("wrote", write_parquet(rows, args.out))


if __name__ == "__main__":
    main()
