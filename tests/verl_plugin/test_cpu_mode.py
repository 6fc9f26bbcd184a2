"""CPU mode pieces on their own: the guards, the platform, and the hf_cpu server (no Ray)."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from scsdpo_verl.verl_plugin import cpu
from scsdpo_verl.verl_plugin.configs import compose_config


def test_cpu_mode_is_refused_on_a_node_with_cuda(monkeypatch):
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    with pytest.raises(SystemExit, match="VERL_PLATFORM=cpu on a node with 8 CUDA device"):
        cpu.check_cpu_mode()
    monkeypatch.delenv("VERL_PLATFORM")
    cpu.check_cpu_mode()  # not requested: nothing to refuse


def test_the_hf_cpu_rollout_needs_cpu_mode_and_cpu_mode_needs_its_settings(monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    with pytest.raises(ValueError, match=r"rollout\.name=hf_cpu needs CPU mode"):
        cpu.check_platform_config(compose_config("sdpo", ["actor_rollout_ref.rollout.name=hf_cpu"]))
    cpu.check_platform_config(compose_config("sdpo", []))
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    cpu.check_platform_config(compose_config("sdpo", list(cpu.CPU_OVERRIDES)))
    broken = compose_config("sdpo", [*cpu.CPU_OVERRIDES, "actor_rollout_ref.actor.strategy=fsdp"])
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.actor\.strategy must be 'fsdp2'"):
        cpu.check_platform_config(broken)


def test_the_cpu_platform_answers_verls_questions():
    platform = cpu.PlatformCPU()
    assert (platform.device_name, platform.communication_backend_name(), platform.ray_resource_name()) == \
        ("cpu", "gloo", "GPU")
    device = platform.device_module
    assert device.memory_allocated() > 0 and device.max_memory_allocated() >= device.memory_allocated()
    free, total = device.mem_get_info()
    assert 0 < free <= total
    state = device.get_rng_state()
    first = torch.rand(3)
    device.set_rng_state(state)
    assert torch.equal(first, torch.rand(3))


# ------------------------------------------------------------------------------------------------------------
# the hf_cpu server
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random tiny Qwen3 with the project's tokenizer (no warm start: only the sampler's contract matters)."""
    from scsdpo_verl.local import models
    from scsdpo_verl.tasks.synthetic import generate

    rows = generate("synthetic_science", 32, 0, split="train")
    tokenizer = models.train_tokenizer(models.corpus_texts(rows))
    model = models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    return models.save_checkpoint_dir(model, tokenizer, tmp_path_factory.mktemp("hf_cpu") / "model")


@pytest.fixture
def server(tiny_model_dir):
    config = SimpleNamespace(response_length=12, prompt_length=64, seed=7)
    return cpu.HFCpuServer(config, OmegaConf.create({"path": str(tiny_model_dir)}), replica_rank=0)


PROMPT = [5, 9, 11, 3, 17]


def generate(server, **params):
    return asyncio.run(server.generate(prompt_ids=PROMPT, sampling_params=dict(params), request_id="r"))


def test_generate_returns_the_sampled_tokens_with_their_log_probs_at_the_temperature(server):
    out = generate(server, temperature=0.7, top_p=1.0, logprobs=True, max_tokens=6)
    assert 1 <= len(out.token_ids) <= 6 and len(out.log_probs) == len(out.token_ids)
    assert out.stop_reason == "completed" and out.extra_fields["global_steps"] is None
    ids = torch.tensor([PROMPT + out.token_ids])
    with torch.no_grad():  # independent: one teacher-forced forward, log softmax(logits / T) at the sampled ids
        logits = server.model(input_ids=ids).logits[0, len(PROMPT) - 1:-1].double() / 0.7
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(out.log_probs, dtype=torch.float64), expected, atol=1e-5)
    assert generate(server, temperature=1.0).log_probs is None  # only on request


def test_generate_stops_at_eos_and_at_the_length_budget(server):
    assert len(generate(server, temperature=1.0).token_ids) <= 12  # response_length when max_tokens is absent
    server.eos_token_ids = list(range(server.model.config.vocab_size))  # every token ends the response
    out = generate(server, temperature=1.0, max_tokens=6)
    assert len(out.token_ids) == 1


def test_samples_depend_on_the_seed_the_step_and_the_occurrence_not_on_arrival_order(server):
    first, second = generate(server, max_tokens=8), generate(server, max_tokens=8)  # occurrences 0 and 1
    again = cpu.HFCpuServer(server.config, OmegaConf.create({"path": server.model.name_or_path}), replica_rank=0)
    assert generate(again, max_tokens=8).token_ids == first.token_ids  # a new server repeats occurrence 0
    assert generate(again, max_tokens=8).token_ids == second.token_ids
    seeds = {cpu.request_seed(7, 1, PROMPT, k) for k in range(4)} | {cpu.request_seed(7, 2, PROMPT, 0)}
    assert len(seeds) == 5


def test_update_weights_replaces_the_served_weights_and_checks_coverage(server):
    state = {name: tensor + 0.5 for name, tensor in asyncio.run(server.weights()).items()}
    assert asyncio.run(server.update_weights(state, global_steps=3)) == 1
    served = asyncio.run(server.weights())
    assert all(torch.equal(served[name], state[name]) for name in state)
    assert generate(server, max_tokens=2).extra_fields["global_steps"] == 3
    with pytest.raises(KeyError, match="lacks"):
        asyncio.run(server.update_weights({**state, "extra.weight": torch.zeros(1)}))
    partial = dict(state)
    partial.pop("model.norm.weight")
    with pytest.raises(KeyError, match="do not cover"):
        asyncio.run(server.update_weights(partial))


@pytest.mark.parametrize(("params", "message"), [({"top_k": 5}, "top_k"), ({"repetition_penalty": 1.2},
                                                                               "repetition_penalty")])
def test_unsupported_sampling_options_are_refused(server, params, message):
    with pytest.raises(ValueError, match=message):
        generate(server, **params)


def test_request_seed_is_a_63_bit_integer():
    seed = cpu.request_seed(42, 0, [1, 2, 3], 0)
    assert 0 <= seed < 2**63 and not math.isnan(seed)
