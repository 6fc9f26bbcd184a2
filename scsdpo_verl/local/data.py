"""Task rows in, token ids and scores out: the glue between ``scsdpo_verl.tasks`` and the local trainer.

maj@k uses ``scsdpo_verl.eval.majority.exact_majority_accuracy`` (the same vote the evaluation reports).

A row is verl's RL parquet row: ``{data_source, prompt: [chat messages], ability,
reward_model: {style, ground_truth}, extra_info: {index, split, difficulty, question_id, solution}}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

REQUIRED_FIELDS = ("data_source", "prompt", "reward_model")


def check_rows(rows: Sequence[dict[str, Any]], source: str) -> None:
    """Raise a ValueError naming the source, row and field when a row cannot be trained on."""
    for i, row in enumerate(rows):
        for field in REQUIRED_FIELDS:
            if field not in row:
                raise ValueError(f"{source}: row {i} is missing field '{field}'")
        messages = row["prompt"]
        if not isinstance(messages, (list, tuple)) or not messages or messages[-1].get("role") != "user":
            raise ValueError(f"{source}: row {i} field 'prompt' must be chat messages ending with a user message")
        if "ground_truth" not in row["reward_model"]:
            raise ValueError(f"{source}: row {i} field 'reward_model.ground_truth' is missing")


def load_rows(task: str, n: int, seed: int, split: str) -> list[dict[str, Any]]:
    """``n`` rows of a synthetic task (deterministic in ``seed``), checked."""
    from scsdpo_verl.tasks import synthetic

    rows = list(synthetic.generate(task, n, seed, split=split))
    check_rows(rows, f"synthetic task {task!r} split {split!r}")
    return rows


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a verl RL parquet file (``scsdpo_verl.tasks.schema``), checked."""
    from scsdpo_verl.tasks.schema import read_parquet

    rows = read_parquet(path)
    check_rows(rows, path)
    return rows


def solutions_over_budget(tokenizer, rows: Sequence[dict[str, Any]], budget: int) -> dict[Any, tuple[int, int]]:
    """Per difficulty level (``extra_info.difficulty``, None where a row has none): ``(over, total)``, how many of
    the rows' worked solutions (``extra_info.solution``) need more than ``budget`` generated tokens, the end token
    included, and how many worked solutions there are. Rows without a worked solution are left out."""
    over: Counter = Counter()
    total: Counter = Counter()
    for row in rows:
        info = row.get("extra_info") or {}
        solution = info.get("solution")
        if not solution:
            continue
        level = info.get("difficulty")
        total[level] += 1
        over[level] += len(tokenizer(solution, add_special_tokens=False)["input_ids"]) + 1 > budget
    return {level: (over[level], total[level]) for level in sorted(total, key=str)}


def generation_budget_warning(tokenizer, rows: Sequence[dict[str, Any]], budget: int, setting: str,
                              source: str) -> str | None:
    """A ``WARNING`` line when some worked solutions of ``rows`` do not fit in ``budget`` generated tokens with this
    tokenizer (``solutions_over_budget``), naming the ``setting``, the ``source`` and the share per level; else None.

    A response cut at the budget has no answer, so such questions can be solved only by answers shorter than
    their worked solutions: the budget, not the model, then caps their pass rate.
    """
    counts = solutions_over_budget(tokenizer, rows, budget)
    short = {level: (o, n) for level, (o, n) in counts.items() if o}
    if not short:
        return None
    over = sum(o for o, _ in short.values())
    total = sum(n for _, n in counts.values())
    levels = ", ".join(f"level {level}: {o} of {n}" for level, (o, n) in short.items())
    return (f"WARNING {setting} = {budget} tokens is shorter than {over} of the {total} worked solutions of {source} "
            f"with this tokenizer, end token included ({levels}): responses cut there have no answer")


def encode_chat(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` through the chat template, ending with the assistant turn's header.

    ``enable_thinking=False`` as in the SDPO reference (templates without the switch ignore it).
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                         enable_thinking=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def with_last_user_message(messages: Sequence[dict[str, str]], content: str) -> list[dict[str, str]]:
    """A copy of ``messages`` whose last user message is replaced by ``content`` (system messages kept)."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [dict(m, content=content) if i == last_user else dict(m) for i, m in enumerate(messages)]


def last_user_text(messages: Sequence[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Decode each row's generated tokens (special tokens such as eos dropped)."""
    return [
        tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True)
        for ids, mask in zip(response_ids, response_mask, strict=True)
    ]


def score_responses(rows: Sequence[dict[str, Any]], texts: Sequence[str]) -> list[dict[str, Any]]:
    """The task scorer on each (row, response): dicts with ``score``, ``acc``, ``pred``, ``feedback``."""
    from scsdpo_verl.tasks import compute_score

    return [
        compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], row.get("extra_info"))
        for row, text in zip(rows, texts, strict=True)
    ]
