"""The EMA teacher inside verl's reference engine: shard-local EMA, FSDP1 root reshard, checkpoints.

verl builds the reference engine with the actor's wrapping and sharding but keeps its parameters offloaded to
the CPU (forward-only engines always get ``CPUOffload`` / ``CPUOffloadPolicy``), while the actor's live on the
accelerator. Both engines shard alike, so the EMA pairs the i-th local shard of the teacher with the i-th local
shard of the actor and moves the actor's shard to the teacher's device for the lerp (``core.ema_lerp_``): no
parameter is gathered and nothing is left on the wrong device.

FSDP1 keeps the root unit's unsharded parameters after a no-grad forward (it does not reshard the root) and
reuses them on the next forward without a new all-gather, so an EMA step written into the sharded root would be
invisible to the teacher on more than one rank. ``reshard_`` frees every unsharded FSDP1 parameter before the
EMA, and FSDP2 modules are resharded after it; ``tests/verl_plugin/test_teacher_sharded.py`` shows the stale
root on two gloo processes without it.

The reference does not checkpoint its teacher (a resumed run restarts it from the base model); this plugin does:
``save_teacher`` / ``load_teacher`` write and read each rank's shards beside the actor's checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.tensor import DTensor

from scsdpo_verl.core import ema_lerp_

TEACHER_DIR = "teacher"


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The rank-local storage of a parameter: a DTensor's local shard, or the (flat) parameter's data."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor.data


def reshard_(module: nn.Module) -> None:
    """Put every FSDP unit of ``module`` in its sharded state, freeing stale unsharded copies (FSDP1 root)."""
    for unit in FSDP.fsdp_modules(module):
        handle = unit._handle
        if handle is not None and handle.uses_sharded_strategy and not handle.needs_unshard():
            handle.reshard(True)  # the unsharded flat parameter is allocated: free it, use the local shard
    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()


@torch.no_grad()
def ema_update_sharded_(teacher: nn.Module, student: nn.Module, rate: float) -> int:
    """``theta_T <- (1 - rate) theta_T + rate theta`` on each rank's shards; returns the number of tensors.

    Both modules must be wrapped alike (same parameter names and local shard shapes)."""
    reshard_(teacher)
    reshard_(student)
    teacher_params = dict(teacher.named_parameters())
    student_params = dict(student.named_parameters())
    if teacher_params.keys() != student_params.keys():
        differ = sorted(set(teacher_params) ^ set(student_params))[:5]
        raise ValueError(f"teacher and actor engines are wrapped differently, e.g. {differ}")
    names = list(teacher_params)
    ema_lerp_([_local(teacher_params[n]) for n in names], [_local(student_params[n]) for n in names], rate)
    reshard_(teacher)
    return len(names)


def _rank_file(directory: Path) -> Path:
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    return directory / f"teacher_world_size_{world}_rank_{rank}.pt"


def teacher_dir(actor_checkpoint_dir: str | os.PathLike) -> Path:
    """``global_step_N/teacher`` beside verl's ``global_step_N/actor``."""
    return Path(actor_checkpoint_dir).parent / TEACHER_DIR


@torch.no_grad()
def save_teacher(module: nn.Module, directory: str | os.PathLike) -> Path:
    """Write this rank's teacher shards (local tensors, on CPU) to ``directory``."""
    reshard_(module)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards = {name: _local(p).detach().to("cpu", copy=True) for name, p in module.named_parameters()}
    path = _rank_file(directory)
    torch.save(shards, path)
    return path


@torch.no_grad()
def load_teacher(module: nn.Module, directory: str | os.PathLike) -> Path:
    """Read this rank's teacher shards back into ``module`` (same world size and wrapping as when saved)."""
    path = _rank_file(Path(directory))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the EMA teacher was not saved with this checkpoint (or with another world size); resuming "
            "would restart the teacher from the base model and change the objective"
        )
    reshard_(module)
    shards = torch.load(path, map_location="cpu", weights_only=True)
    params = dict(module.named_parameters())
    if shards.keys() != params.keys():
        raise ValueError(f"{path}: saved teacher shards do not match the reference engine's parameters")
    for name, p in params.items():
        local = _local(p)
        if local.shape != shards[name].shape:
            raise ValueError(f"{path}: shard {name} has shape {tuple(shards[name].shape)}, "
                             f"expected {tuple(local.shape)}")
        local.copy_(shards[name])
    reshard_(module)
    return path


def remove_old_teachers(root: str | os.PathLike, keep: int | None) -> list[Path]:
    """Delete ``global_step_*/teacher`` beyond the newest ``keep`` (verl prunes only the actor's directories)."""
    if keep is None or keep <= 0:
        return []
    dirs = sorted(Path(root).glob(f"global_step_*/{TEACHER_DIR}"), key=lambda p: int(p.parent.name.split("_")[-1]))
    removed = dirs[:-keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
