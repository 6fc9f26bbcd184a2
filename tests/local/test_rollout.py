"""Sampling with a KV cache against an independent full forward, eos handling, top-p, and the two savings
(one prompt forward per distinct prompt, grouped key/value heads) against a plain sampler written here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Qwen3Config, Qwen3ForCausalLM

from scsdpo_verl.core import token_logprobs
from scsdpo_verl.local.rollout import (
    _sdpa_grouped_kv,
    grouped_kv_attention,
    left_pad,
    position_ids_from_mask,
    response_logits,
    sample,
    sample_next_token,
    unique_rows,
)

EOS, PAD = 2, 0


def small_model() -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, eos_token_id=EOS,
                         pad_token_id=PAD)
    return Qwen3ForCausalLM(config).eval()


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], PAD)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_cached_sampling_matches_a_full_forward_and_stops_at_eos():
    torch.set_num_threads(1)
    model = small_model()
    # twin prompts (a question's rollouts) share one prompt forward: each must still continue its own prompt
    prompts = [[3, 4, 5, 6, 7], [8, 9], [3, 4, 5, 6, 7], [10, 11, 12], [8, 9]]
    ids, mask = left_pad(prompts, PAD)
    rollout = sample(model, ids, mask, max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD,
                     generator=torch.Generator().manual_seed(1))
    steps = rollout.response_ids.shape[1]
    # independent reference: each row unpadded, one full causal forward without a cache
    for row, prompt in enumerate(prompts):
        length = int(rollout.response_mask[row].sum())
        response = rollout.response_ids[row, :length].tolist()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
        expected = F.log_softmax(logits[len(prompt) - 1:-1], -1).gather(-1, torch.tensor(response)[:, None])[:, 0]
        torch.testing.assert_close(rollout.logprobs[row, :length], expected, atol=1e-5, rtol=1e-5)
        # stops at the first eos: only pad after it, and the mask covers exactly up to it
        if EOS in response:
            assert response.index(EOS) == length - 1
        else:
            assert length == steps
        assert (rollout.response_ids[row, length:] == PAD).all()
        assert (rollout.logprobs[row, length:] == 0).all()
    # the batched teacher-forced forward gives the same log-probs
    with torch.no_grad():
        logits = response_logits(model, ids, mask, rollout.response_ids, rollout.response_mask)
    torch.testing.assert_close(token_logprobs(logits, rollout.response_ids) * rollout.response_mask,
                               rollout.logprobs, atol=1e-5, rtol=1e-5)


def test_same_generator_seed_same_sample():
    model = small_model()
    ids, mask = left_pad([[3, 4], [5, 6, 7]], PAD)
    draws = [sample(model, ids, mask, max_new_tokens=8, eos_token_id=EOS, pad_token_id=PAD,
                    generator=torch.Generator().manual_seed(7)).response_ids for _ in range(2)]
    assert torch.equal(draws[0], draws[1])


def test_a_budget_of_t_tokens_takes_t_forwards():
    """The prompt's forward gives token 1, each further forward one more: the T-th token needs none after it."""
    model = small_model()
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    ids, mask = left_pad([[3, 4], [5, 6, 7]], PAD)
    out = sample(model, ids, mask, max_new_tokens=5, eos_token_id=[], pad_token_id=PAD,
                 generator=torch.Generator().manual_seed(0))
    assert out.response_ids.shape == (2, 5) and len(calls) == 5


def test_top_p_keeps_the_nucleus_only():
    # probabilities 0.5, 0.3, 0.2: top_p=0.6 keeps {0, 1}; top_p=0.45 keeps {0}
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    tokens, logprobs = sample_next_token(logits, 1.0, 0.6, generator)
    assert set(tokens.tolist()) == {0, 1}
    assert abs((tokens == 0).float().mean().item() - 0.5 / 0.8) < 0.05
    torch.testing.assert_close(logprobs[tokens == 1], torch.full_like(logprobs[tokens == 1], torch.tensor(0.3).log()))
    assert set(sample_next_token(logits, 1.0, 0.45, generator)[0].tolist()) == {0}
    assert set(sample_next_token(logits, 0.0, 1.0, generator)[0].tolist()) == {0}  # greedy


def test_teacher_forced_logits_are_divided_by_the_temperature():
    """Left-padded batch forward == one unpadded full forward per row, logits / T (T = 0.5, not 1)."""
    model = small_model()
    prompts, responses = [[3, 4, 5, 6, 7], [8, 9]], [[10, 11, EOS], [12, 13, 14]]
    ids, mask = left_pad(prompts, PAD)
    response_ids = torch.tensor(responses)
    with torch.no_grad():
        got = response_logits(model, ids, mask, response_ids, torch.ones(2, 3), temperature=0.5)
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
            expected = logits[len(prompt) - 1:len(prompt) - 1 + len(response)] / 0.5
            torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=1e-5)


def plain_sample(model, ids, mask, *, max_new_tokens, generator):
    """The sampler without the savings: every row through the prompt forward, transformers' own attention."""
    positions = position_ids_from_mask(mask)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        tokens, logprobs, finished = [], [], torch.zeros(ids.shape[0], dtype=torch.bool)
        attention, position = mask.clone(), positions[:, -1:] + 1
        for _ in range(max_new_tokens):
            token, logprob = sample_next_token(out.logits[:, -1], 1.0, 1.0, generator)
            token = torch.where(finished, torch.full_like(token, PAD), token)
            tokens.append(token)
            logprobs.append(torch.where(finished, torch.zeros_like(logprob), logprob))
            finished = finished | (token == EOS)
            if bool(finished.all()) or len(tokens) == max_new_tokens:
                break
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            out = model(input_ids=token[:, None], attention_mask=attention, position_ids=position,
                        past_key_values=out.past_key_values, use_cache=True)
            position = position + 1
    return torch.stack(tokens, 1), torch.stack(logprobs, 1)


def test_sampling_with_the_savings_draws_what_the_plain_sampler_draws():
    """Same generator seed, same tokens and log-probs: the savings change the time, not the sample."""
    torch.set_num_threads(1)
    model = small_model()
    prompts = [[3, 4, 5], [3, 4, 5], [6, 7, 8, 9], [6, 7, 8, 9], [3, 4, 5], [10]]
    ids, mask = left_pad(prompts, PAD)
    for seed in range(3):
        rollout = sample(model, ids, mask, max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD,
                         generator=torch.Generator().manual_seed(seed))
        tokens, logprobs = plain_sample(model, ids, mask, max_new_tokens=10,
                                        generator=torch.Generator().manual_seed(seed))
        assert torch.equal(rollout.response_ids, tokens)
        torch.testing.assert_close(rollout.logprobs, logprobs, atol=1e-6, rtol=0)


def test_twin_prompts_go_through_one_prompt_forward():
    model = small_model()
    batch_sizes = []
    model.register_forward_hook(lambda module, args, kwargs, output: batch_sizes.append(kwargs["input_ids"].shape[0]),
                                with_kwargs=True)
    ids, mask = left_pad([[3, 4], [5, 6, 7], [3, 4], [3, 4], [5, 6, 7]], PAD)
    sample(model, ids, mask, max_new_tokens=3, eos_token_id=[], pad_token_id=PAD,
           generator=torch.Generator().manual_seed(0))
    assert batch_sizes == [2, 5, 5]  # the prompt forward on the 2 distinct prompts, then every row decodes
    first, twin = unique_rows(ids, mask)
    assert first.tolist() == [0, 1] and twin.tolist() == [0, 1, 0, 0, 1]
    # same ids but another mask is another prompt (a real token equal to the pad id)
    ids, mask = torch.tensor([[0, 5], [0, 5]]), torch.tensor([[0, 1], [1, 1]])
    assert unique_rows(ids, mask)[0].tolist() == [0, 1]


def test_grouped_kv_attention_equals_attention_over_repeated_heads():
    """2 key/value heads for 4 query heads, a padding + causal mask: the prompt forward's shape and a decode
    step's. Reference: each key/value head copied to its 2 query heads by hand, then plain sdpa."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 2, True
    for batch, queries, keys in ((3, 6, 6), (3, 1, 9)):
        query, key, value = (torch.randn(batch, 4, queries, 8), torch.randn(batch, 2, keys, 8),
                             torch.randn(batch, 2, keys, 8))
        mask = torch.ones(batch, 1, queries, keys, dtype=torch.bool).tril(keys - queries)
        mask[0, :, :, :2] = False  # row 0 left-padded
        got, _ = _sdpa_grouped_kv(module, query, key, value, mask, scaling=0.3)
        expected = F.scaled_dot_product_attention(query, key.repeat_interleave(2, dim=1),
                                                  value.repeat_interleave(2, dim=1), attn_mask=mask, scale=0.3)
        torch.testing.assert_close(got, expected.transpose(1, 2), atol=1e-6, rtol=0)


def test_grouped_kv_attention_is_for_sdpa_models_and_only_inside_the_block():
    model = small_model()
    assert model.config._attn_implementation == "sdpa"
    with grouped_kv_attention(model):
        assert model.config._attn_implementation != "sdpa"
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "eager"
    with grouped_kv_attention(model):
        assert model.config._attn_implementation == "eager"
