"""Atomic, resumable checkpoints of the local trainer.

Layout of ``<run_dir>/checkpoints/step_000020/``:
    policy/          save_pretrained model + tokenizer (loads with AutoModelForCausalLM.from_pretrained)
    teacher/         save_pretrained EMA teacher (absent for GRPO)
    trainer_state.pt optimizer, scheduler, data position, step (no RNG state: the trainer seeds every random
                     stream from (seed, step), see ``trainer.step_seed``)
A checkpoint is written into ``.tmp-step_000020`` and renamed when complete, so a kill at any moment leaves
either the previous checkpoints or a complete new one (a leftover tmp dir is ignored and removed).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PREFIX = "step_"


@dataclass
class TrainerState:
    step: int  # optimizer steps completed
    data_position: int  # questions consumed from the training stream
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:06d}"


def save(run_dir: str | Path, *, policy, teacher, tokenizer, state: TrainerState, keep_last: int = 2) -> Path:
    """Write one checkpoint atomically (tmp dir + rename) and keep only the newest ``keep_last``."""
    final = checkpoint_dir(run_dir, state.step)
    tmp = final.with_name(".tmp-" + final.name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    policy.save_pretrained(tmp / "policy")
    tokenizer.save_pretrained(tmp / "policy")
    if teacher is not None:
        teacher.save_pretrained(tmp / "teacher")
    torch.save(vars(state), tmp / "trainer_state.pt")
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (tmp dirs of interrupted saves are not listed)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
            and (p / "trainer_state.pt").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_state(path: str | Path) -> TrainerState:
    # weights_only=False: checkpoints written before the RNG state was dropped hold numpy RNG tuples (their
    # "rng" entry is ignored); the file is one this trainer wrote
    saved = torch.load(Path(path) / "trainer_state.pt", weights_only=False)
    saved.pop("rng", None)
    return TrainerState(**saved)
