"""Fixtures for the local backend: a fake arithmetic task and a very small base checkpoint.

The trainer tests replace the task scorer by a deterministic fake (success iff crc32(response) % 3 == 0) so
that groups always have mixed outcomes and SDPO's teacher is active whatever the tiny model learned.
"""

from __future__ import annotations

import random
import zlib

import pytest
import torch

from scsdpo_verl.local import models, trainer
from scsdpo_verl.local.config import TrainConfig


def fake_rows(n: int, seed: int, split: str = "train") -> list[dict]:
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        rows.append({
            "data_source": "fake_sum",
            "prompt": [{"role": "system", "content": "Answer as <answer>N</answer>."},
                       {"role": "user", "content": f"What is {a} + {b}?"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"index": i, "split": split, "difficulty": 1 + (a + b) // 10,
                           "question_id": f"{split}-{i}", "solution": f"{a} + {b} = {a + b} <answer>{a + b}</answer>"},
        })
    return rows


def fake_score(rows, texts) -> list[dict]:
    out = []
    for text in texts:
        ok = zlib.crc32(text.encode()) % 3 == 0
        out.append({"score": float(ok), "acc": ok, "pred": text[:4], "feedback": "" if ok else "wrong"})
    return out


@pytest.fixture
def fake_task(monkeypatch):
    """Route the trainer's data and scoring through the fake task."""
    monkeypatch.setattr(trainer, "load_rows", lambda task, n, seed, split: fake_rows(n, seed, split))
    monkeypatch.setattr(trainer, "score_responses", fake_score)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """A ~30k-parameter Qwen3 with the project tokenizer and a few warm-start steps, saved as an HF dir."""
    torch.set_num_threads(1)
    rows = fake_rows(200, 0)
    tokenizer = models.train_tokenizer(models.corpus_texts(rows))
    model = models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    models.warm_start(model, tokenizer, rows, steps=5, batch_size=8, lr=3e-3, log_every=0)
    return str(models.save_checkpoint_dir(model, tokenizer, tmp_path_factory.mktemp("base")))


@pytest.fixture
def tiny_config(tiny_base, tmp_path):
    """A config of a few seconds: 2 questions x 4 rollouts, 10 new tokens, 3 steps."""

    def make(**overrides) -> TrainConfig:
        values = dict(model_path=tiny_base, run_dir=str(tmp_path / "run"), task="fake", train_size=16, val_size=4,
                      val_questions=2, val_k=2, questions_per_step=2, rollouts_per_question=4, max_new_tokens=10,
                      total_steps=3, val_every=0, save_every=0, topk=20, lr=1e-2, warmup_steps=1, threads=1,
                      progress_bar=False)
        values.update(overrides)
        return TrainConfig(**values)

    return make
