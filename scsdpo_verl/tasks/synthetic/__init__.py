"""Deterministic, difficulty-graded synthetic twins of the two real tasks (the embedded default's data).

``generate(task, n, seed, split=...)`` returns verl RL rows that use the real task's answer format, scorer
(``scsdpo_verl.tasks.compute_score``) and parquet schema. Guarantees:

- deterministic: the same (task, n, seed, split) gives identical rows (``random.Random`` seeded by a string);
- balanced levels: the n rows hold ``n // L`` or ``n // L + 1`` questions of each level, in shuffled order;
- no repeats: questions are unique within a call (by question text);
- disjoint splits: a question's split is fixed by a hash of its text (1 in 10 is "test", 1 in 10
  "validation", the rest "train"), so no two splits share a question, whatever the seeds; difficulty and the
  warm start are calibrated on "validation", never on "test";
- ``extra_info.question_id`` = ``<task>/<12 hex of sha256(text)>``, stable across seeds and calls;
- ``extra_info.solution`` is a short worked response that scores 1.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scsdpo_verl.tasks.schema import make_row
from scsdpo_verl.tasks.science import ABILITY as MCQ_ABILITY
from scsdpo_verl.tasks.science import format_mcq_question, format_mcq_solution
from scsdpo_verl.tasks.synthetic import science as _science
from scsdpo_verl.tasks.synthetic import tooluse as _tooluse
from scsdpo_verl.tasks.tooluse import ABILITY as TOOL_ABILITY
from scsdpo_verl.tasks.tooluse import format_calls, make_gold

TASKS = ("synthetic_science", "synthetic_tooluse")
SPLITS = ("train", "validation", "test")
NUM_LEVELS = 5
TEST_BUCKETS = 1  # of 10 hash buckets; the next one is "validation"
MAX_DRAWS_PER_QUESTION = 5000


@dataclass(frozen=True)
class _Draft:
    """A drawn question: the text that identifies it and a function building its row."""

    key: str
    build: Callable[[int, str, int, str], dict[str, Any]]  # (index, split, level, question_id) -> row


def _science_draft(level: int, rng: random.Random) -> _Draft:
    question = _science.sample_question(level, rng)
    n_options = 2 if rng.random() < _science.TWO_CHOICE_PROB[level] else 4
    options, answer_pos = _science.pick_options(question, n_options, rng)
    letter = chr(ord("A") + answer_pos)
    user = format_mcq_question(question.stem, options)
    solution = format_mcq_solution("; ".join(question.steps), letter)

    def build(index: int, split: str, level_: int, qid: str) -> dict[str, Any]:
        return make_row(
            data_source="synthetic_science",
            messages=[{"role": "system", "content": _science.SYSTEM_PROMPT}, {"role": "user", "content": user}],
            ability=MCQ_ABILITY, ground_truth=letter, index=index, split=split, question_id=qid,
            difficulty=level_, solution=solution, domain=question.family,
        )

    return _Draft(question.stem, build)


def _tooluse_draft(level: int, rng: random.Random) -> _Draft:
    question = _tooluse.sample_question(level, rng)
    user = _tooluse.format_user_message(question)

    def build(index: int, split: str, level_: int, qid: str) -> dict[str, Any]:
        return make_row(
            data_source="synthetic_tooluse",
            messages=[{"role": "system", "content": _tooluse.SYSTEM_PROMPT}, {"role": "user", "content": user}],
            ability=TOOL_ABILITY, ground_truth=make_gold(question.calls), index=index, split=split,
            question_id=qid, difficulty=level_, solution=format_calls(question.calls), domain="tools",
        )

    return _Draft(question.question, build)


_DRAFTERS: dict[str, Callable[[int, random.Random], _Draft]] = {
    "synthetic_science": _science_draft,
    "synthetic_tooluse": _tooluse_draft,
}


def question_hash(task: str, key: str) -> str:
    """sha256 hex of ``task|key``: names the question and fixes its split."""
    return hashlib.sha256(f"{task}|{key}".encode()).hexdigest()


def split_of(task: str, key: str) -> str:
    """``"test"`` for 1 in 10 questions (by hash), ``"validation"`` for another 1 in 10, else ``"train"``;
    independent of seeds."""
    bucket = int(question_hash(task, key)[:8], 16) % 10
    return "test" if bucket < TEST_BUCKETS else "validation" if bucket == TEST_BUCKETS else "train"


def level_plan(n: int, levels: Sequence[int], rng: random.Random) -> list[int]:
    """``n`` levels cycling through ``levels`` (balanced counts), shuffled."""
    plan = [levels[i % len(levels)] for i in range(n)]
    rng.shuffle(plan)
    return plan


def generate(
    task: str, n: int, seed: int, *, split: str = "train", levels: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """``n`` verl RL rows of the synthetic ``task`` for ``split`` (see the module doc for the guarantees).

    ``levels`` restricts the difficulty levels (default: all of 1..5). Raises ``RuntimeError`` when a level's
    pool of unused questions for this split runs dry (n too large).
    """
    if task not in _DRAFTERS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    levels = list(levels) if levels is not None else list(range(1, NUM_LEVELS + 1))
    if not levels or any(not 1 <= lv <= NUM_LEVELS for lv in levels):
        raise ValueError(f"levels must be a non-empty subset of 1..{NUM_LEVELS}, got {levels}")

    draft_question = _DRAFTERS[task]
    rng = random.Random(f"{task}|{seed}|{split}")
    seen: set[str] = set()
    rows = []
    for index, level in enumerate(level_plan(n, levels, rng)):
        for _ in range(MAX_DRAWS_PER_QUESTION):
            draft = draft_question(level, rng)
            if draft.key not in seen and split_of(task, draft.key) == split:
                break
        else:
            raise RuntimeError(f"{task}: no unused {split} question left at level {level} after "
                               f"{MAX_DRAWS_PER_QUESTION} draws; ask for fewer than n={n}")
        seen.add(draft.key)
        qid = f"{task}/{question_hash(task, draft.key)[:12]}"
        rows.append(draft.build(index, split, level, qid))
    return rows
