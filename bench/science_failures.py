"""Where a base model's science answers go wrong: the arithmetic or the option lookup (VALIDATION split).

    python bench/science_failures.py --model results/models/qwen3-tiny/base
    python bench/science_failures.py --model /tmp/base --questions 48 --k 4
    python bench/science_failures.py --model results/models/qwen3-tiny/base --questions 96 \
        --continue-sft walk --sft-steps 1200 --sft-rows 5000

Samples ``k`` answers per validation question at T = 1 and sorts each with
``tasks.synthetic.science.answer_diagnosis``: is the last ``= N`` of its reasoning the correct option's text
(the number), and does its letter name the option showing N (the lookup)? Prints the shares overall and per
level. A model that computes but cannot look up shows ``letter | number right`` near the guessing rate: the
default's bases did (README, "Why science stays at its guessing rate"). ``correct | number wrong`` above the
guessing rate means the letter was found without the computation (e.g. from how the distractors relate).

``--lookup-drills-only STEPS`` asks whether the model can learn the lookup at all: it trains on option-lookup drills
alone (``models.option_lookup_example``: a training question's options, the answer names one number and then its
letter; constant ``--sft-lr``, batch 32) and prints, every 100 steps, how often the letter is the most likely
token on 200 held-out drills made from validation questions' options (chance: about 0.29 with the 2-option
questions), then exits (``--save DIR`` keeps the trained model, whose science ``--model DIR`` then diagnoses).
``--mix-steps N`` follows the drills with N steps in which a ``--mix-drill-fraction`` of each batch are drills and
the rest the warm start's examples of both tasks (training split, half in the self-teacher's format): drills alone
make the model answer everything in the drills' format.

``--continue-sft task|walk|tag`` first trains the model further on science alone (``--sft-steps`` steps of 32 of
``--sft-rows`` training questions, ``models.warm_start``), in the task's worked-solution format, with the
reasoning walking the option lines up to the answer (``walk_options_solution``), or with every option line restated
as number then letter and the letter named after the result (``tag_options_solution``), and diagnoses the result:
does the lookup need more steps or another format?
"""

from __future__ import annotations

import argparse
import copy
import random
from collections import Counter, defaultdict

import torch

from scsdpo_verl.local import models
from scsdpo_verl.local.data import decode_responses, encode_chat, last_user_text, load_rows
from scsdpo_verl.local.rollout import left_pad, sample
from scsdpo_verl.tasks import synthetic
from scsdpo_verl.tasks.synthetic.science import answer_diagnosis, tag_options_solution, walk_options_solution


def continue_science_sft(model, tokenizer, solution_format: str, *, steps: int, rows: int, lr: float,
                         seed: int) -> None:
    """Train ``model`` further on science's training questions alone, in ``solution_format`` (task | walk | tag)."""
    train_rows = load_rows("synthetic_science", rows, 0, "train")
    rewrite = {"walk": walk_options_solution, "tag": tag_options_solution}.get(solution_format)
    if rewrite is not None:
        train_rows = copy.deepcopy(train_rows)
        for row in train_rows:
            info = row["extra_info"]
            info["solution"] = rewrite(info["solution"], last_user_text(row["prompt"]),
                                       row["reward_model"]["ground_truth"])
    print("continued SFT on", len(train_rows), "rows, e.g.", train_rows[0]["extra_info"]["solution"])
    models.warm_start(model, tokenizer, train_rows, steps=steps, lr=lr, seed=seed, log_every=0)


@torch.no_grad()
def drill_letter_accuracy(model, tokenizer, drills) -> float:
    """Share of ``drills`` (input ids, labels) whose answer letter is the model's most likely next token."""
    letters = {tokenizer.convert_tokens_to_ids(letter) for letter in "ABCD"}
    model.eval()
    hits = 0
    for ids, labels in drills:
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        position = max(i for i, (token, label) in enumerate(zip(ids, labels, strict=True))
                       if label != -100 and token in letters)
        hits += int(logits[position - 1].argmax().item() == ids[position])
    model.train()
    return hits / len(drills)


def held_out_drills(tokenizer, seed: int) -> list[tuple[list[int], list[int]]]:
    """200 lookup drills made from validation questions' options (never trained on)."""
    rng = random.Random(seed + 1)
    sets = models.option_sets(load_rows("synthetic_science", 200, 0, "validation"))
    return [models.option_lookup_example(tokenizer, rng, sets) for _ in range(200)]


def train_steps(model, tokenizer, next_batch, *, steps: int, lr: float, held_out, label: str) -> None:
    """``steps`` AdamW steps (constant ``lr``, clipped at 1) on ``next_batch()``, printing the held-out drills'
    letter accuracy every 100 steps and after the last."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for step in range(1, steps + 1):
        loss = models._answer_loss(model, tokenizer, next_batch(), bf16=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps:
            accuracy = drill_letter_accuracy(model, tokenizer, held_out)
            print(f"{label} {step}: loss {loss.item():.3f}, held-out letter accuracy {accuracy:.3f}", flush=True)


def train_on_lookup_drills(model, tokenizer, *, steps: int, lr: float, seed: int) -> None:
    """Lookup drills only, printing the held-out letter accuracy every 100 steps (see the module docstring)."""
    sets = models.option_sets(load_rows("synthetic_science", 5000, 0, "train"))
    held_out = held_out_drills(tokenizer, seed)
    rng = random.Random(seed)
    print(f"step 0: held-out letter accuracy {drill_letter_accuracy(model, tokenizer, held_out):.3f}")
    train_steps(model, tokenizer, lambda: [models.option_lookup_example(tokenizer, rng, sets) for _ in range(32)],
                steps=steps, lr=lr, held_out=held_out, label="step")


def train_on_mix(model, tokenizer, *, steps: int, lr: float, drill_fraction: float, seed: int) -> None:
    """Batches of 32: each example a lookup drill with probability ``drill_fraction``, else one of the warm start's
    examples (2500 training rows per task, half rendered as the self-teacher sees them); a fresh AdamW at constant
    ``lr``. Prints the held-out drills' letter accuracy every 100 steps."""
    rows = load_rows("synthetic_science", 2500, 0, "train") + load_rows("synthetic_tooluse", 2500, 0, "train")
    rng = random.Random(seed)
    examples = [models.sft_example(tokenizer, row, as_teacher=rng.random() < 0.5) for row in rows]
    sets = models.option_sets(load_rows("synthetic_science", 5000, 0, "train"))
    train_steps(model, tokenizer,
                lambda: [models.option_lookup_example(tokenizer, rng, sets) if rng.random() < drill_fraction
                         else rng.choice(examples) for _ in range(32)],
                steps=steps, lr=lr, held_out=held_out_drills(tokenizer, seed), label="mix step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved checkpoint directory (a base or a trained run)")
    parser.add_argument("--questions", type=int, default=48, help="validation questions")
    parser.add_argument("--k", type=int, default=4, help="samples per question (T = 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--continue-sft", choices=("task", "walk", "tag"), default=None,
                        help="first train further on science in this worked-solution format (see above)")
    parser.add_argument("--sft-steps", type=int, default=1200)
    parser.add_argument("--sft-rows", type=int, default=5000, help="training questions (at most 5000)")
    parser.add_argument("--sft-lr", type=float, default=1e-3)
    parser.add_argument("--lookup-drills-only", type=int, default=0, metavar="STEPS",
                        help="train on option-lookup drills alone for STEPS steps, print the letter accuracy, exit")
    parser.add_argument("--mix-steps", type=int, default=0,
                        help="after --lookup-drills-only: this many steps of drills mixed with task examples")
    parser.add_argument("--mix-drill-fraction", type=float, default=0.25)
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="save the model after --lookup-drills-only or --continue-sft (a checkpoint directory)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = models.load_pretrained(args.model)
    if args.lookup_drills_only:
        train_on_lookup_drills(model, tokenizer, steps=args.lookup_drills_only, lr=args.sft_lr, seed=args.seed)
        if args.mix_steps:
            train_on_mix(model, tokenizer, steps=args.mix_steps, lr=args.sft_lr,
                         drill_fraction=args.mix_drill_fraction, seed=args.seed)
        if args.save:
            models.save_checkpoint_dir(model, tokenizer, args.save)
        return
    if args.continue_sft:
        continue_science_sft(model, tokenizer, args.continue_sft, steps=args.sft_steps, rows=args.sft_rows,
                             lr=args.sft_lr, seed=args.seed)
        if args.save:
            models.save_checkpoint_dir(model, tokenizer, args.save)
    model.eval()
    rows = list(synthetic.generate("synthetic_science", args.questions, args.seed, split="validation"))
    generator = torch.Generator().manual_seed(args.seed)
    counts: dict[str, Counter] = defaultdict(Counter)
    for start in range(0, len(rows), 8):
        chunk = rows[start:start + 8]
        prompt_ids, prompt_mask = left_pad([encode_chat(tokenizer, row["prompt"]) for row in chunk
                                            for _ in range(args.k)], tokenizer.pad_token_id)
        with torch.no_grad():
            rollout = sample(model, prompt_ids, prompt_mask, max_new_tokens=96, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, temperature=1.0, generator=generator)
        texts = decode_responses(tokenizer, rollout.response_ids, rollout.response_mask)
        for index, text in enumerate(texts):
            row = chunk[index // args.k]
            found = answer_diagnosis(text, last_user_text(row["prompt"]), row["reward_model"]["ground_truth"])
            for key in ("all", f"level {row['extra_info']['difficulty']}"):
                counts[key]["answers"] += 1
                counts[key].update(name for name, value in found.items() if value)
                counts[key]["number and letter"] += found["number_right"] and found["letter_matches_number"]
                counts[key]["correct, number wrong"] += found["correct"] and not found["number_right"]
    print(f"{'':<9} {'answers':>7} {'correct':>8} {'number right':>13} {'letter | number right':>22} "
          f"{'letter names its number':>24} {'correct | number wrong':>23}")
    for key in ["all", *sorted(k for k in counts if k != "all")]:
        c = counts[key]
        lookup = c["number and letter"] / c["number_right"] if c["number_right"] else float("nan")
        n = c["answers"]
        wrong = n - c["number_right"]
        shortcut = c["correct, number wrong"] / wrong if wrong else float("nan")
        print(f"{key:<9} {n:>7} {c['correct'] / n:>8.3f} {c['number_right'] / n:>13.3f} {lookup:>22.3f} "
              f"{c['letter_matches_number'] / n:>24.3f} {shortcut:>23.3f}")


if __name__ == "__main__":
    main()
