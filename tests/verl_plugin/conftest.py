"""Shared fixtures: a small verl v1 batch as the trainer reads it from TransferQueue (jagged rows)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("verl", reason="the verl plugin tests need verl 0.9.1 (pip install -e '.[verl]')")


def toy_encode(messages) -> list[int]:
    """A deterministic stand-in for a chat template: one token per character of 'role:content|'."""
    text = "".join(f"{m['role']}:{m['content']}|" for m in messages) + "assistant:"
    return [ord(c) % 97 + 3 for c in text]


@pytest.fixture
def rollout_batch() -> dict:
    """Two questions x 4 rollouts (+ one question with a single success) and their rewards.

    q0: successes at rows 1, 2 (p = 0.5); q1: success at row 5 only (p = 0.25); q2: no success (p = 0).
    """
    torch.manual_seed(0)
    uids = ["q0"] * 4 + ["q1"] * 4 + ["q2"] * 2
    scores = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    system = {"role": "system", "content": "Answer in <answer> tags."}
    questions = {"q0": "What is 2+2?", "q1": "Name a noble gas.", "q2": "Hard question."}
    messages = [[system, {"role": "user", "content": questions[u]}] for u in uids]
    texts = [f"<think>step {i}</think>answer {i}" for i in range(len(uids))]
    response_lengths = [3, 5, 2, 4, 6, 1, 3, 2, 4, 3]
    responses = [torch.randint(5, 50, (n,)) for n in response_lengths]
    prompt_lengths = [4, 4, 4, 4, 6, 6, 6, 6, 5, 5]
    prompts = [torch.randint(5, 50, (n,)) for n in prompt_lengths]
    return {
        "uids": uids,
        "scores": scores,
        "messages": messages,
        "texts": texts,
        "responses": responses,
        "prompts": prompts,
        "response_lengths": response_lengths,
    }
