"""The EMA teacher on two gloo ranks: FSDP1 (FULL_SHARD, verl's ``strategy: fsdp``) and FSDP2 with the CPU offload
policy verl gives its reference engine.

On each rank: the teacher runs a no-grad forward (FSDP1 then keeps its root unit unsharded), the student moves,
``ema_update_sharded_`` moves the teacher; the teacher's next forward must equal the forward of a plain model whose
full parameters took the same EMA step. Without ``reshard_`` the FSDP1 root is stale and the check fails.
Then the teacher's shards are saved, spoiled and loaded back.
"""

from __future__ import annotations

import socket
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

RATE = 0.25


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x):
        return torch.tanh(self.linear(x))


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.block, self.head = nn.Linear(4, 6), Block(), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.block(self.embed(x)))


def load_teacher_module():
    """``scsdpo_verl/verl_plugin/teacher.py`` by path: it needs torch only, and importing the plugin package would
    import verl (~15 s in each spawned process)."""
    import importlib.util
    from pathlib import Path

    import scsdpo_verl

    path = Path(scsdpo_verl.__file__).parent / "verl_plugin" / "teacher.py"
    spec = importlib.util.spec_from_file_location("scsdpo_teacher_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wrap(model: nn.Module, strategy: str, offload: bool) -> nn.Module:
    if strategy == "fsdp":
        from torch.distributed.fsdp import CPUOffload, ShardingStrategy
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        # FSDP1's CPU offload pins memory, which needs an accelerator: the staleness is the same without it
        return FSDP(model, auto_wrap_policy=ModuleWrapPolicy({Block}), sharding_strategy=ShardingStrategy.FULL_SHARD,
                    cpu_offload=CPUOffload(offload_params=False), device_id=torch.device("cpu"))  # fmt: skip
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    policy = CPUOffloadPolicy(pin_memory=False) if offload else None
    fully_shard(model.block, mesh=mesh, offload_policy=policy, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, offload_policy=policy, reshard_after_forward=True)
    return model


def worker(rank: int, world: int, port: int, strategy: str, tmp: str, skip_reshard: bool, errors) -> None:
    try:
        teacher_module = load_teacher_module()
        dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
        if skip_reshard:  # the defect this test guards against
            teacher_module.reshard_ = lambda module: None
        torch.manual_seed(0)
        plain_teacher = Model()
        plain_student = Model()
        with torch.no_grad():
            for p in plain_student.parameters():
                p.add_(torch.randn_like(p))
        teacher = wrap(Model(), strategy, offload=True)
        student = wrap(Model(), strategy, offload=False)
        load_full(teacher, plain_teacher, strategy)
        load_full(student, plain_student, strategy)
        x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.allclose(teacher(x), plain_teacher(x), atol=1e-6)  # leaves FSDP1's root unsharded
            teacher_module.ema_update_sharded_(teacher, student, RATE)
            for t, s in zip(plain_teacher.parameters(), plain_student.parameters(), strict=True):
                t.lerp_(s, RATE)
            got, expected = teacher(x), plain_teacher(x)
        assert torch.allclose(got, expected, atol=1e-6), f"rank {rank}: teacher forward is stale after the EMA"

        path = teacher_module.save_teacher(teacher, f"{tmp}/global_step_1/teacher")
        with torch.no_grad():
            for p in teacher.parameters():
                (p.to_local() if hasattr(p, "to_local") else p.data).zero_()
        teacher_module.load_teacher(teacher, path.parent)
        with torch.no_grad():
            assert torch.allclose(teacher(x), expected, atol=1e-6), f"rank {rank}: reloaded teacher differs"
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:  # reported to the parent process, then re-raised
        errors.put(f"rank {rank}: {traceback.format_exc()}")
        raise


def load_full(wrapped: nn.Module, plain: nn.Module, strategy: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(wrapped, plain.state_dict(), options=StateDictOptions(full_state_dict=True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(strategy: str, tmp_path, skip_reshard: bool = False) -> list[str]:
    context = mp.get_context("spawn")
    errors = context.SimpleQueue()
    processes = [context.Process(target=worker, args=(rank, 2, port, strategy, str(tmp_path), skip_reshard, errors))
                 for port in [free_port()] for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    if any(p.exitcode != 0 for p in processes) and not found:
        found.append(f"exit codes {[p.exitcode for p in processes]}")
    return found


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp2"])
def test_ema_on_shards_is_visible_to_the_next_forward_and_survives_a_checkpoint(strategy, tmp_path):
    errors = run(strategy, tmp_path)
    assert not errors, "\n".join(errors)


def test_without_the_root_reshard_fsdp1_serves_a_stale_teacher(tmp_path):
    errors = run("fsdp", tmp_path, skip_reshard=True)
    assert any("stale" in error for error in errors), errors
