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


@pytest.fixture(scope="session")
def verl_tiny(tmp_path_factory) -> dict:
    """A tiny Qwen3 (hidden 64, 2 layers, the project's tokenizer) warm-started for 200 steps on the synthetic
    science twin, so that about one rollout in eight answers correctly (mixed groups: teachers exist), and the
    verl parquet splits of that task (64 train / 8 test questions). About a minute on two cores."""
    from scsdpo_verl.local import models
    from scsdpo_verl.pipeline import write_task_data
    from scsdpo_verl.tasks.synthetic import generate

    root = tmp_path_factory.mktemp("verl_tiny")
    write_task_data({"kind": "synthetic_science", "train_size": 64, "test_size": 8},
                    root / "data/train.parquet", root / "data/test.parquet")
    torch.set_num_threads(2)
    rows = generate("synthetic_science", 256, 0, split="train")
    tokenizer = models.train_tokenizer(models.corpus_texts(rows))
    model = models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=64, intermediate_size=128,
                                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    models.warm_start(model, tokenizer, rows, steps=200, batch_size=16, lr=5e-3, log_every=0, progress_bar=False)
    model_dir = models.save_checkpoint_dir(model, tokenizer, root / "model")
    return {"model": model_dir, "train": root / "data/train.parquet", "test": root / "data/test.parquet"}
