"""verl 0.9.1's FSDP2 actor engine in CPU mode (in this process, gloo world size 1) against the local backend.

Prints one JSON line: the largest |difference| between verl's ``compute_log_prob`` and the local backend's
teacher-forced log-probs (``local.rollout.response_logits`` + ``core.token_logprobs``) on the same weights and the
same batch, per ``use_remove_padding``. Run by tests/verl_plugin/test_engine_agreement.py in a subprocess
(CPU mode has to be chosen before verl is imported).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["VERL_PLATFORM"] = "cpu"
for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
    os.environ.setdefault(key, value)

import torch  # noqa: E402

import scsdpo_verl.verl_plugin  # noqa: E402, F401  (CPU mode: platform, engines, gloo)
from scsdpo_verl.core import token_logprobs  # noqa: E402
from scsdpo_verl.local.models import load_pretrained  # noqa: E402
from scsdpo_verl.local.rollout import left_pad, response_logits  # noqa: E402
from scsdpo_verl.verl_plugin.configs import compose_config  # noqa: E402
from scsdpo_verl.verl_plugin.cpu import CPU_OVERRIDES  # noqa: E402


def nested(rows):
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def main(model_path: str, port: str, temperature: float) -> None:
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl.workers.utils.padding import response_from_nested

    os.environ["MASTER_PORT"] = port
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    prompt_lengths, response_lengths = [5, 9, 4, 6], [6, 3, 8, 5]
    vocab = load_pretrained(model_path)[0].config.vocab_size
    prompts = [torch.randint(5, vocab, (p,), generator=gen) for p in prompt_lengths]
    responses = [torch.randint(5, vocab, (r,), generator=gen) for r in response_lengths]

    # the local backend: left-padded prompts, right-padded responses, one teacher-forced forward
    policy, tokenizer = load_pretrained(model_path)
    prompt_ids, prompt_mask = left_pad([p.tolist() for p in prompts], tokenizer.pad_token_id)
    width = max(response_lengths)
    response_ids = torch.full((4, width), tokenizer.pad_token_id)
    response_mask = torch.zeros(4, width)
    for i, r in enumerate(responses):
        response_ids[i, :len(r)], response_mask[i, :len(r)] = r, 1
    with torch.no_grad():
        local = token_logprobs(response_logits(policy, prompt_ids, prompt_mask, response_ids, response_mask,
                                               temperature), response_ids)

    result = {}
    for remove_padding in (True, False):
        config = compose_config("grpo", [
            *CPU_OVERRIDES, f"actor_rollout_ref.model.path={model_path}", "trainer.n_gpus_per_node=1",
            "data.train_batch_size=2", "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4", "data.max_prompt_length=64",
            "data.max_response_length=16", f"actor_rollout_ref.model.use_remove_padding={remove_padding}",
        ])
        worker = ActorRolloutRefWorker(config.actor_rollout_ref, role="actor")
        worker.init_model()
        batch = TensorDict({
            "input_ids": nested([torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]),
            "position_ids": nested([torch.arange(p + r) for p, r in zip(prompt_lengths, response_lengths,
                                                                         strict=True)]),
            "prompts": nested(prompts), "responses": nested(responses),
            "response_mask": nested([torch.ones(r, dtype=torch.int64) for r in response_lengths]),
            "loss_mask": nested([torch.cat([torch.zeros(p, dtype=torch.int64), torch.ones(r, dtype=torch.int64)])
                                 for p, r in zip(prompt_lengths, response_lengths, strict=True)]),
            "attention_mask": nested([torch.ones(p + r, dtype=torch.int64)
                                      for p, r in zip(prompt_lengths, response_lengths, strict=True)]),
        }, batch_size=4)
        tu.assign_non_tensor(batch, temperature=temperature, calculate_entropy=False, compute_loss=False)
        output = worker.compute_log_prob(batch)
        verl_rows = response_from_nested(output["log_probs"], batch["response_mask"]).unbind()
        diff = max(float((row.float() - local[i, :len(row)]).abs().max()) for i, row in enumerate(verl_rows))
        result[f"remove_padding={remove_padding}"] = diff
        result["param_dtype"] = str(next(worker.actor.engine.module.parameters()).dtype)
        result["autocast_dtype"] = str(getattr(worker.actor.engine, "_autocast_dtype", None))
        del worker
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
