"""CPU mode: stock verl 0.9.1's real trainer (v1 sync trainer, FSDP2 engine, TransferQueue, agent loop, reward
loop, checkpoints) on a machine without an accelerator, for tests, CI and laptops. It is not a way to train at scale.

Switched on only by verl's own platform override ``VERL_PLATFORM=cpu`` (the launcher's ``--cpu`` sets it and
forwards it to every Ray process); ``activate()`` runs from the ``verl.plugins`` entry point in every process that
imports verl. Nothing here is applied without that variable, and the launcher refuses it on a node with a CUDA
device (``check_cpu_mode``), so a GPU job cannot fall into CPU mode by accident.

What it adds, all through verl's extension points (no verl file is edited):

* ``PlatformCPU`` in verl's ``PlatformRegistry`` (device ``cpu``, backend ``gloo``). verl's placement groups count
  accelerators, so the platform names Ray's ``GPU`` resource and the launcher starts Ray with logical GPUs
  (``ray_kwargs.ray_init.num_gpus``); no CUDA call is ever made.
* the FSDP2 engines registered for device ``cpu`` in verl's ``EngineRegistry`` (FSDP1 cannot run on CPU).
* a gloo process group: verl builds the backend string ``cpu:gloo,<device>:<backend>``, which on CPU names the CPU
  twice and is refused by torch; the worker's initialiser is rebound to pass ``cpu:gloo``.
* FSDP2's CPU offload of the reference (teacher) engine without pinned memory (pinning needs an accelerator).
  These two are the only verl names CPU mode rebinds, each in one module, only in CPU mode.
* the ``hf_cpu`` rollout: a ``RolloutReplica`` whose server actor samples with Hugging Face models and the local
  backend's KV-cache sampler (temperature, top-p, max tokens, EOS, log-probs of the sampled tokens), and an
  in-worker adapter that sends the actor's weights to that server through verl's own weight-sync path
  (``CheckpointEngineManager.update_weights`` -> ``ActorRolloutRefWorker.update_weights(mode="naive")`` ->
  ``BaseRollout.update_weights``) after every update. It is a test / laptop rollout: one request at a time,
  no batching across requests, no KV-cache reuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

CPU_PLATFORM = "cpu"
ROLLOUT_NAME = "hf_cpu"
PLATFORM_ENV = "VERL_PLATFORM"


def cpu_mode_requested() -> bool:
    """True when verl's platform override asks for the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get(PLATFORM_ENV, "").strip().lower() == CPU_PLATFORM


def check_cpu_mode() -> None:
    """Refuse CPU mode on a node with a CUDA device (a GPU job must never fall back to the CPU by accident), and
    a CPU mode that came too late (verl resolved another platform before this plugin registered ``cpu``)."""
    if not cpu_mode_requested():
        return
    if torch.cuda.is_available():
        raise SystemExit(
            f"{PLATFORM_ENV}=cpu on a node with {torch.cuda.device_count()} CUDA device(s): CPU mode is for machines "
            f"without an accelerator; unset {PLATFORM_ENV} to train on the GPUs"
        )
    from verl.utils.device import get_device_name

    if get_device_name() != CPU_PLATFORM:
        raise SystemExit(f"{PLATFORM_ENV}=cpu was set after verl chose platform '{get_device_name()}': set it in "
                         "the environment before starting Python")


# What CPU mode needs, as Hydra overrides placed before the user's (a user's override wins, then
# check_cpu_config names a key whose value CPU mode cannot run).
CPU_OVERRIDES: tuple[str, ...] = (
    "trainer.device=cpu",
    f"actor_rollout_ref.rollout.name={ROLLOUT_NAME}",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    *(override.format(role=role) for role in ("actor", "ref") for override in (
        "actor_rollout_ref.{role}.strategy=fsdp2",  # FSDP1 needs an accelerator handle
        "actor_rollout_ref.{role}.fsdp_config.use_torch_compile=false",
        # fp32 compute: verl's default mixed precision is bf16, whose rounding would hide fp32-level checks
        "++actor_rollout_ref.{role}.fsdp_config.mixed_precision="
        "{{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}}",
    )),
    "++actor_rollout_ref.model.override_config.attn_implementation=eager",  # no flash-attn on CPU
    # fewer helper processes than verl's GPU defaults: each one imports torch + verl (~1 GB, ~15 s)
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
    "ray_kwargs.ray_init.num_cpus=8",  # logical CPUs for verl's actors, not cores
)


def check_platform_config(config: Any) -> None:
    """The composed config against the platform: ``hf_cpu`` only in CPU mode, and CPU mode's needs (naming the key)."""
    rollout = config.actor_rollout_ref.rollout.name
    if not cpu_mode_requested():
        if rollout == ROLLOUT_NAME:
            raise ValueError(f"actor_rollout_ref.rollout.name={ROLLOUT_NAME} needs CPU mode: set {PLATFORM_ENV}=cpu")
        return
    needs = {
        "trainer.device": CPU_PLATFORM,
        "actor_rollout_ref.rollout.name": ROLLOUT_NAME,
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.ref.strategy": "fsdp2",
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
    }
    from omegaconf import OmegaConf

    for key, value in needs.items():
        if OmegaConf.select(config, key) != value:
            raise ValueError(f"{PLATFORM_ENV}=cpu: {key} must be {value!r}, got {OmegaConf.select(config, key)!r}")


# ------------------------------------------------------------------------------------------------------------
# the platform
# ------------------------------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _peak_rss_bytes() -> int:
    # Linux reports KiB; the kernel updates the peak lazily, so never report less than the current size
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _rss_bytes())


class CpuDeviceModule:
    """``torch.cpu`` plus the ``torch.cuda``-style calls verl makes on its device module.

    Memory statistics report this process's resident memory (current and peak), so verl's memory logs and
    ``perf/max_memory_*`` metrics carry a real figure; cache and allocator calls do nothing; the RNG state is
    torch's CPU generator.
    """

    Stream = torch.cpu.Stream
    Event = torch.cpu.Event
    current_stream = staticmethod(torch.cpu.current_stream)
    stream = staticmethod(torch.cpu.stream)
    synchronize = staticmethod(torch.cpu.synchronize)
    get_rng_state = staticmethod(torch.get_rng_state)
    set_rng_state = staticmethod(torch.set_rng_state)
    manual_seed = staticmethod(torch.manual_seed)
    manual_seed_all = staticmethod(torch.manual_seed)

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        return "cpu"

    @staticmethod
    def set_device(device: Any) -> None:
        return None

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return "CPU"

    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def ipc_collect() -> None:
        return None

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        return None

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return _rss_bytes()

    @staticmethod
    def memory_reserved(device: Any = None) -> int:
        return _rss_bytes()

    @staticmethod
    def max_memory_allocated(device: Any = None) -> int:
        return _peak_rss_bytes()

    @staticmethod
    def max_memory_reserved(device: Any = None) -> int:
        return _peak_rss_bytes()

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        return None

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


class PlatformCPU(PlatformBase):
    """verl's platform interface for a machine without an accelerator (gloo, logical Ray GPUs)."""

    _device_module = CpuDeviceModule()

    @property
    def device_name(self) -> str:
        return CPU_PLATFORM

    @property
    def vendor_name(self) -> str:
        return CPU_PLATFORM

    @property
    def device_module(self) -> CpuDeviceModule:
        return self._device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return cpu_mode_requested()  # never auto-detected: only the explicit override selects it

    def current_device(self) -> str:
        return "cpu"  # verl passes get_device_id() to .to() and torch.device()

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"  # verl's placement groups count accelerators: Ray is started with logical GPUs

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> None:
        return None



def register_platform() -> None:
    from verl.plugin.platform.platform_manager import PlatformRegistry

    if PlatformRegistry.get(CPU_PLATFORM) is None:
        PlatformRegistry.register(platform=CPU_PLATFORM)(PlatformCPU)


def register_engines() -> None:
    """verl's FSDP2 engines for device ``cpu`` (FSDP1 needs an accelerator handle and stays unregistered)."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    engines = (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead))
    for model_type, engine_class in engines:
        if CPU_PLATFORM not in EngineRegistry._engines.get(model_type, {}).get("fsdp2", {}):
            EngineRegistry.register(model_type=model_type, backend="fsdp2", device=CPU_PLATFORM)(engine_class)


def use_gloo_process_group() -> None:
    """The workers' process group with backend ``cpu:gloo`` (verl's default string names the CPU twice)."""
    import verl.workers.engine_workers as engine_workers
    from verl.utils.distributed import initialize_global_process_group_ray

    if getattr(engine_workers.initialize_global_process_group_ray, "_scsdpo_cpu", False):
        return

    def initialize_gloo(timeout_second=None, backend=None):
        return initialize_global_process_group_ray(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    initialize_gloo._scsdpo_cpu = True
    engine_workers.initialize_global_process_group_ray = initialize_gloo


def unpinned_offload() -> None:
    """FSDP2's CPU offload without pinned memory (pinning needs an accelerator). verl forces
    ``CPUOffloadPolicy(pin_memory=True)`` on forward-only engines (the reference engine, i.e. the SDPO teacher);
    CPU mode keeps that offload path, so the teacher is held as on a GPU node, minus the pinning."""
    import verl.workers.engine.fsdp.transformer_impl as transformer_impl
    from torch.distributed.fsdp import CPUOffloadPolicy

    def cpu_offload_policy(pin_memory: bool = True) -> CPUOffloadPolicy:
        return CPUOffloadPolicy(pin_memory=False)

    transformer_impl.CPUOffloadPolicy = cpu_offload_policy


def register_rollout() -> None:
    """``hf_cpu`` in verl's two rollout registries (the replica the trainer launches, the worker's adapter)."""
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFCpuReplica)
    base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFCpuRollout"


def activate() -> bool:
    """Apply CPU mode in this process when ``VERL_PLATFORM=cpu``; returns whether it did."""
    if not cpu_mode_requested():
        return False
    register_platform()
    register_engines()
    use_gloo_process_group()
    unpinned_offload()
    register_rollout()
    return True


# ------------------------------------------------------------------------------------------------------------
# the hf_cpu rollout
# ------------------------------------------------------------------------------------------------------------
def request_seed(seed: int, global_steps: int, prompt_ids: list[int], occurrence: int) -> int:
    """Sampling seed of one request: a function of the rollout seed, the weights' step, the prompt and how many
    times this prompt was already sampled at this step (the n rollouts of a prompt get n different seeds), so a
    run's samples do not depend on how Ray interleaves the concurrent requests."""
    digest = hashlib.sha256(repr((seed, global_steps, list(prompt_ids), occurrence)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class HFCpuServer:
    """The server actor of one ``hf_cpu`` replica: a Hugging Face causal LM in fp32 on the CPU.

    ``generate`` follows verl's token-in/token-out server contract (``TokenOutput``); requests are served one at
    a time (a lock, the model runs in a worker thread so the actor stays responsive to control calls).
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int, threads: int = 1) -> None:
        from transformers import AutoModelForCausalLM
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig

        torch.set_num_threads(threads)
        if not isinstance(model_config, HFModelConfig):  # the replica passes the raw config section
            model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.config = config
        self.replica_rank = replica_rank
        self.global_steps: int | None = None
        self.model = AutoModelForCausalLM.from_pretrained(
            model_config.local_path, torch_dtype=torch.float32, attn_implementation="eager"
        ).eval()
        tokenizer = model_config.tokenizer
        self.eos_token_ids = self._eos_token_ids(model_config, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        self.weight_updates = 0
        self._occurrences: dict[tuple, int] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def _eos_token_ids(model_config: Any, tokenizer: Any) -> list[int]:
        eos = getattr(model_config.generation_config, "eos_token_id", None) if model_config.generation_config else None
        if eos is None:
            eos = tokenizer.eos_token_id
        return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None]

    def _max_tokens(self, sampling_params: dict, prompt_length: int) -> int:
        cfg = self.config
        limit = sampling_params.pop("max_tokens", None) or sampling_params.pop("max_new_tokens", None)
        if limit is None:
            limit = min(cfg.response_length, cfg.prompt_length + cfg.response_length - prompt_length)
        return max(1, int(limit))

    def _sample(self, prompt_ids: list[int], temperature: float, top_p: float, max_tokens: int, seed: int):
        from scsdpo_verl.local.rollout import sample

        ids = torch.tensor([prompt_ids], dtype=torch.long)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return sample(self.model, ids, torch.ones_like(ids), max_new_tokens=max_tokens,
                          eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id,
                          temperature=temperature, top_p=top_p, generator=generator)

    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       image_data: Any = None, video_data: Any = None, audio_data: Any = None,
                       mm_processor_kwargs: Any = None, **kwargs: Any):
        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("rollout hf_cpu serves text prompts only")
        params = dict(sampling_params)
        prompt_ids = [int(t) for t in prompt_ids]
        max_tokens = self._max_tokens(params, len(prompt_ids))
        top_k = params.get("top_k", -1)
        if top_k not in (None, -1, 0):
            raise ValueError(f"rollout hf_cpu: top_k={top_k} is not supported (use -1)")
        if params.get("repetition_penalty", 1.0) != 1.0:
            raise ValueError("rollout hf_cpu: repetition_penalty must be 1.0")
        temperature, top_p = float(params.get("temperature", 1.0)), float(params.get("top_p", 1.0))
        step = -1 if self.global_steps is None else int(self.global_steps)
        async with self._lock:
            key = (step, tuple(prompt_ids))
            occurrence = self._occurrences.get(key, 0)
            self._occurrences[key] = occurrence + 1
            seed = request_seed(int(self.config.seed), step, prompt_ids, occurrence)
            rollout = await asyncio.to_thread(self._sample, prompt_ids, temperature, top_p, max_tokens, seed)
        length = int(rollout.response_mask[0].sum())
        token_ids = rollout.response_ids[0, :length].tolist()
        log_probs = rollout.logprobs[0, :length].tolist() if params.get("logprobs") else None
        return TokenOutput(token_ids=token_ids, log_probs=log_probs, stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps})

    async def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the actor's full weights; every parameter of the model must be covered (tied ones aside)."""
        state = self.model.state_dict()
        unknown = sorted(set(named_tensors) - set(state))
        if unknown:
            raise KeyError(f"rollout hf_cpu: the actor sent weights the rollout model lacks: {unknown[:5]}")
        tied = {name for name in state if name not in named_tensors and self._is_tied(name)}
        missing = sorted(set(state) - set(named_tensors) - tied)
        if missing:
            raise KeyError(f"rollout hf_cpu: the actor's weights do not cover {missing[:5]}")
        async with self._lock:  # never swap weights under a running request
            self.model.load_state_dict(named_tensors, strict=False)
            self.model.tie_weights()
            self.weight_updates += 1
            if global_steps is not None:
                self.global_steps = global_steps
                self._occurrences = {k: v for k, v in self._occurrences.items() if k[0] == global_steps}
        return self.weight_updates

    def _is_tied(self, name: str) -> bool:
        return name == "lm_head.weight" and bool(getattr(self.model.config, "tie_word_embeddings", False))

    async def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the served weights (tests compare them with the actor's)."""
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None  # weights stay resident: nothing to restore

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None  # no cache outlives a request

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False, **kwargs: Any) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        async with self._lock:
            return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


def server_actor_name(replica_rank: int, suffix: str = "") -> str:
    return f"{ROLLOUT_NAME}_server_{replica_rank}{suffix}"


class HFCpuReplica(RolloutReplica):
    """One ``hf_cpu`` server per replica, placed on the node of the replica's first worker."""

    async def launch_servers(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.world_size != 1:
            raise ValueError("rollout hf_cpu: tensor/data/pipeline parallel sizes must be 1")
        node_id = await self.workers[0].__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
        server = ray.remote(HFCpuServer).options(
            name=server_actor_name(self.replica_rank, self.name_suffix),
            num_cpus=0,
            max_concurrency=self.max_concurrency,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        self.servers = [server]
        self._server_handle = server
        self._server_address = server_actor_name(self.replica_rank, self.name_suffix)  # a key, not a URL

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFCpuRollout(BaseRollout):
    """The in-worker adapter of ``hf_cpu``: sends the actor's weights to the replica's server after each update."""

    sleep_level = 2

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # rollout world size is 1
        self._server = None

    def _server_handle(self):
        import ray

        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], wire_format: str = "named_tensors",
                             global_steps: int | None = None, peft_config: Any = None, **kwargs: Any) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"rollout hf_cpu: wire_format {wire_format!r} (only named_tensors)")
        if peft_config is not None:
            raise NotImplementedError("rollout hf_cpu: LoRA adapters are not supported")
        # every rank consumes the generator (FSDP gathers full tensors collectively); each rank serves its replica
        state = {name: tensor.detach().to("cpu", torch.float32).clone() for name, tensor in weights}
        await self._server_handle().update_weights.remote(state, global_steps)
