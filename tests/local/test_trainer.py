"""End-to-end checks of the local trainer on a tiny model (a few seconds in all)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scsdpo_verl.local import checkpoint, trainer
from scsdpo_verl.local.config import ConfigError
from scsdpo_verl.local.models import load_pretrained
from scsdpo_verl.local.rollout import Rollout
from scsdpo_verl.local.trainer import question_indices, train, warmup_then_constant


def final_weights(run_dir: str, part: str = "policy") -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(checkpoint.latest(run_dir) / part, local_files_only=True)
    return {k: v.clone() for k, v in model.state_dict().items()}


def read_log(run_dir: str) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("timing_s/")}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def test_sc_sdpo_with_exponent_zero_is_sdpo_bit_for_bit(fake_task, tiny_config, tmp_path):
    sdpo = tiny_config(method="sdpo", run_dir=str(tmp_path / "sdpo"))
    sc0 = tiny_config(method="sc_sdpo", exponent=0.0, run_dir=str(tmp_path / "sc0"))
    sc_half = tiny_config(method="sc_sdpo", exponent=0.5, run_dir=str(tmp_path / "sc_half"))
    for cfg in (sdpo, sc0, sc_half):
        train(cfg)
    log = read_log(sdpo.run_dir)
    assert any(r.get("self_distillation/reprompt_sample_fraction", 0) > 0 for r in log), "teacher never active"
    assert_same_weights(final_weights(sdpo.run_dir), final_weights(sc0.run_dir))
    assert_same_weights(final_weights(sdpo.run_dir, "teacher"), final_weights(sc0.run_dir, "teacher"))
    assert [without_timing(r) for r in log] == [without_timing(r) for r in read_log(sc0.run_dir)]
    # the comparison can fail: real SC weights (exponent 0.5, unequal pass rates) give another update
    differs = any(not torch.equal(a, b) for a, b in zip(final_weights(sdpo.run_dir).values(),
                                                        final_weights(sc_half.run_dir).values(), strict=True))
    assert differs


@pytest.mark.parametrize("method", ["grpo", "sdpo", "sc_sdpo"])
def test_finite_losses_and_the_policy_changes(fake_task, tiny_config, tiny_base, method):
    cfg = tiny_config(method=method)
    train(cfg)
    log = read_log(cfg.run_dir)
    steps = [r for r in log if r["step"] > 0]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert all(math.isfinite(r["actor/pg_loss"]) and math.isfinite(r["actor/grad_norm"]) for r in steps)
    assert any(r["actor/grad_norm"] > 0 for r in steps)
    assert all(0 <= r["critic/score/mean"] <= 1 for r in steps)
    assert sum(r[f"sc/pass_rate_hist/{k}"] for k in range(5) for r in steps[:1]) == cfg.questions_per_step
    before = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    after = final_weights(cfg.run_dir)
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert "val-core/fake_sum/acc/mean@2" in log[-1] and "val-core/fake_sum/acc/maj@2/mean" in log[-1]
    if method != "grpo":  # the EMA teacher moved, but less than the policy
        teacher = final_weights(cfg.run_dir, "teacher")
        name = "model.layers.0.mlp.up_proj.weight"
        assert 0 < (teacher[name] - before[name]).norm() < (after[name] - before[name]).norm()


def test_same_seed_same_numbers(fake_task, tiny_config, tmp_path):
    first = tiny_config(method="sc_sdpo", run_dir=str(tmp_path / "a"))
    second = tiny_config(method="sc_sdpo", run_dir=str(tmp_path / "b"))
    other_seed = tiny_config(method="sc_sdpo", run_dir=str(tmp_path / "c"), seed=1)
    for cfg in (first, second, other_seed):
        train(cfg)
    assert [without_timing(r) for r in read_log(first.run_dir)] == [without_timing(r) for r in read_log(second.run_dir)]
    assert_same_weights(final_weights(first.run_dir), final_weights(second.run_dir))
    assert read_log(first.run_dir)[1]["critic/score/mean"] != read_log(other_seed.run_dir)[1]["critic/score/mean"] or \
        any(not torch.equal(a, b) for a, b in zip(final_weights(first.run_dir).values(),
                                                  final_weights(other_seed.run_dir).values(), strict=True))


@pytest.mark.parametrize("method", ["grpo", "sdpo", "sc_sdpo"])
def test_micro_batches_give_the_full_batch_gradient(fake_task, tiny_config, tmp_path, monkeypatch, method):
    """Gradient accumulation over micro-batches of 3 rollouts (chunks 3, 3, 2 of 8) = one full-batch step:
    same accumulated gradient (recorded where the trainer clips it) and same metrics, up to float rounding."""
    gradients: list[dict[str, torch.Tensor]] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm):
        parameters = list(parameters)
        gradients.append({str(i): p.grad.detach().clone() for i, p in enumerate(parameters) if p.grad is not None})
        return clip(parameters, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    whole = tiny_config(method=method, total_steps=1, run_dir=str(tmp_path / "whole"), save_every=1)
    micro = tiny_config(method=method, total_steps=1, run_dir=str(tmp_path / "micro"), save_every=1,
                        micro_batch_size=3)
    for cfg in (whole, micro):
        train(cfg)
    (step_whole,), (step_micro,) = ([r for r in read_log(c.run_dir) if r["step"] == 1] for c in (whole, micro))
    assert step_whole["critic/score/mean"] == step_micro["critic/score/mean"]  # same rollouts
    assert step_whole.keys() == step_micro.keys()
    for key, value in without_timing(step_whole).items():
        assert step_micro[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    if method != "grpo":
        assert step_whole["sd/num_tokens"] > 0, "no teacher: the comparison would not test the distillation loss"
    grad_whole, grad_micro = gradients
    assert grad_whole.keys() == grad_micro.keys()
    assert any(g.abs().max() > 0 for g in grad_whole.values()), "zero gradient: the comparison would be vacuous"
    # fp32 sums in another order: a few eps of the tensor's scale (an AVX2 EPYC missed 1e-7 on one near-zero
    # element by 3e-9, where the rtol means nothing); a per-micro-batch normaliser is off by more than that scale
    for name, g in grad_whole.items():
        torch.testing.assert_close(grad_micro[name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()) + 1e-9)


@pytest.fixture(scope="module")
def dropout_base(tiny_base, tmp_path_factory) -> str:
    """The tiny base model with attention dropout 0.3: its training forward draws from the global torch RNG."""
    model = AutoModelForCausalLM.from_pretrained(tiny_base, attention_dropout=0.3)
    path = tmp_path_factory.mktemp("dropout_base")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize(("method", "dropout"), [("grpo", False), ("sc_sdpo", False), ("sc_sdpo", True)])
def test_resume_after_kill_equals_uninterrupted(fake_task, tiny_config, tmp_path, dropout_base, method, dropout):
    """Killed after step 3, resumed from the step-2 checkpoint: the same weights, optimizer and log as a run that
    never stopped. The warm-up (5 steps) outlasts the kill, so the resumed run needs the scheduler's state; with
    dropout, the resumed steps need the same global-RNG draws (the trainer seeds them from (seed, step))."""
    knobs = dict(method=method, total_steps=4, save_every=2, warmup_steps=5)
    if dropout:
        knobs["model_path"] = dropout_base
        model = AutoModelForCausalLM.from_pretrained(dropout_base).train()
        ids = torch.tensor([[5, 6, 7, 8]])
        assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits), "dropout is not active"
    full = tiny_config(**knobs, run_dir=str(tmp_path / "full"))
    train(full)

    killed = tiny_config(**knobs, run_dir=str(tmp_path / "killed"))

    def kill_after_step_3(step, metrics):  # dies after the step-2 checkpoint, losing step 3's work
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(killed, on_step_end=kill_after_step_3)
    assert checkpoint.latest(killed.run_dir).name == "step_000002"
    with pytest.raises(ConfigError, match="resume"):
        train(killed)  # a run dir with checkpoints is never overwritten silently
    with pytest.raises(ConfigError, match="'lr'"):
        train(tiny_config(**knobs, run_dir=killed.run_dir, resume=True, lr=0.5))
    train(tiny_config(**knobs, run_dir=killed.run_dir, resume=True))

    assert_same_weights(final_weights(full.run_dir), final_weights(killed.run_dir))
    if method != "grpo":
        assert_same_weights(final_weights(full.run_dir, "teacher"), final_weights(killed.run_dir, "teacher"))
    state_full = checkpoint.load_state(checkpoint.latest(full.run_dir))
    state_resumed = checkpoint.load_state(checkpoint.latest(killed.run_dir))
    assert state_full.data_position == state_resumed.data_position == 8
    for a, b in zip(state_full.optimizer["state"].values(), state_resumed.optimizer["state"].values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    log = read_log(full.run_dir)
    assert [without_timing(r) for r in log] == [without_timing(r) for r in read_log(killed.run_dir)]
    # the resumed run's cumulative step time continues from the kept steps (step 3's lost time is not counted)
    resumed = read_log(killed.run_dir)
    running = [0.0]
    for record in resumed[1:]:
        running.append(running[-1] + record["timing_s/step"])
    assert [r["timing_s/step_cumulative"] for r in resumed] == pytest.approx(running)
    assert [r["actor/lr"] for r in log[1:]] == pytest.approx([full.lr * s / 5 for s in (2, 3, 4, 5)])


def test_resume_after_the_last_checkpoint_still_writes_the_final_summary(fake_task, tiny_config, tmp_path):
    cfg = tiny_config(method="grpo", total_steps=2, save_every=1, run_dir=str(tmp_path / "run"))

    def kill_after_last_step(step, metrics):  # the last checkpoint is saved, summary.json is not
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step_end=kill_after_last_step)
    assert not (Path(cfg.run_dir) / "summary.json").exists()
    summary = train(tiny_config(method="grpo", total_steps=2, save_every=1, run_dir=cfg.run_dir, resume=True))
    assert summary["final"]["step"] == 2 and "val-core/fake_sum/acc/mean@2" in summary["final"]
    assert json.loads((Path(cfg.run_dir) / "summary.json").read_text())["final"] == summary["final"]


def test_a_run_may_resume_with_smaller_micro_batches(fake_task, tiny_config, tmp_path):
    """The out-of-memory case: resume a killed run with micro-batches; a changed lr is still refused."""
    cfg = tiny_config(method="sc_sdpo", total_steps=3, save_every=1, run_dir=str(tmp_path / "run"))

    def kill_after_step_1(step, metrics):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step_end=kill_after_step_1)
    with pytest.raises(ConfigError, match="'lr'"):
        train(tiny_config(method="sc_sdpo", total_steps=3, save_every=1, run_dir=cfg.run_dir, resume=True, lr=0.5))
    summary = train(tiny_config(method="sc_sdpo", total_steps=3, save_every=1, run_dir=cfg.run_dir, resume=True,
                                micro_batch_size=3))
    assert summary["final"]["step"] == 3


def test_checkpoints_load_offline_with_auto_classes(fake_task, tiny_config, monkeypatch):
    cfg = tiny_config(method="sdpo", total_steps=2, save_every=1, keep_last=1)
    train(cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = checkpoint.list_checkpoints(cfg.run_dir)
    assert [p.name for p in saved] == ["step_000002"]  # keep_last=1 removed step 1
    for part in ("policy", "teacher"):
        model = AutoModelForCausalLM.from_pretrained(saved[0] / part, local_files_only=True)
        assert model.config.model_type == "qwen3"
    tokenizer = AutoTokenizer.from_pretrained(saved[0] / "policy", local_files_only=True)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_interrupted_save_leaves_no_checkpoint(tmp_path):
    (tmp_path / "checkpoints" / ".tmp-step_000004" / "policy").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000002").mkdir()  # incomplete: no trainer_state.pt
    assert checkpoint.latest(tmp_path) is None


def test_data_order_and_schedule():
    first_epoch = question_indices(0, 5, 5, seed=3)
    assert sorted(first_epoch) == [0, 1, 2, 3, 4]
    assert question_indices(3, 4, 5, seed=3) == first_epoch[3:] + question_indices(5, 2, 5, seed=3)
    schedule = warmup_then_constant(4)
    assert [schedule(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_then_constant(0)(0) == 1.0


@pytest.mark.parametrize("task", ["synthetic_science", "synthetic_tooluse"])
def test_one_step_on_the_real_synthetic_tasks(tiny_config, task):
    cfg = tiny_config(method="sc_sdpo", task=task, total_steps=1)
    train(cfg)
    log = read_log(cfg.run_dir)
    assert f"val-core/{task}/acc/mean@2" in log[-1]
    assert math.isfinite(log[-1]["actor/pg_loss"])


@pytest.mark.parametrize("method", ["grpo", "sc_sdpo"])
def test_a_non_finite_gradient_skips_the_step_and_the_ema(fake_task, tiny_config, tmp_path, monkeypatch, method):
    one_step = tiny_config(method=method, total_steps=1, run_dir=str(tmp_path / "one"))
    train(one_step)
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def nan_on_second_step(parameters, max_norm):  # the real clip runs, but step 2's norm reads NaN
        norm = real_clip(parameters, max_norm)
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) == 2 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_on_second_step)
    two_steps = tiny_config(method=method, total_steps=2, run_dir=str(tmp_path / "two"))
    train(two_steps)
    record = read_log(two_steps.run_dir)[-1]
    assert record["actor/update_skipped"] == 1.0 and math.isnan(record["actor/grad_norm"])
    assert read_log(two_steps.run_dir)[1]["actor/update_skipped"] == 0.0
    # step 2 changed nothing: policy and teacher are step 1's (the teacher differs from the policy there,
    # so an EMA step toward it would show)
    assert_same_weights(final_weights(one_step.run_dir), final_weights(two_steps.run_dir))
    if method != "grpo":
        assert_same_weights(final_weights(one_step.run_dir, "teacher"), final_weights(two_steps.run_dir, "teacher"))


def test_validation_logs_mean_at_k_and_majority_at_k_per_source(tiny_config, tiny_base, monkeypatch):
    """3 questions from two sources, k=3, in chunks of 2 questions; a fixed table of (pred, acc) per sample makes
    mean@3 and maj@3 differ for each source, and fixed response lengths give the length metric."""
    table = {  # question -> its k samples' (pred, acc): mean@3, maj@3 (first carrier of the most frequent pred)
        "a0": [("A", 1), ("B", 0), ("B", 0)],  # 1/3, 0
        "a1": [("C", 1), ("C", 1), ("C", 1)],  # 1,   1
        "b0": [("E", 0), ("F", 1), ("F", 1)],  # 2/3, 1
    }
    rows = [{"data_source": f"src_{q[0]}", "prompt": [{"role": "user", "content": f"question {q}"}],
             "reward_model": {"ground_truth": ""}, "extra_info": {"question_id": q}} for q in table]
    cfg = tiny_config(val_k=3, val_temperature=0.9, val_top_p=0.8, max_new_tokens=4)
    lengths: list[int] = []

    def fixed_sample(model, prompt_ids, prompt_mask, *, temperature, top_p, max_new_tokens, **_):
        assert (temperature, top_p, max_new_tokens) == (0.9, 0.8, 4)
        rows_here = prompt_ids.shape[0]
        mask = torch.zeros(rows_here, 4)
        for i in range(rows_here):
            lengths.append(1 + (len(lengths) % 4))
            mask[i, :lengths[-1]] = 1
        ids = torch.full((rows_here, 4), 5)
        return Rollout(prompt_ids, prompt_mask, ids, mask, torch.zeros(rows_here, 4))

    def fixed_scores(batch_rows, texts):
        seen: dict[str, int] = {}
        out = []
        for row in batch_rows:
            q = row["extra_info"]["question_id"]
            pred, acc = table[q][seen.get(q, 0)]
            seen[q] = seen.get(q, 0) + 1
            out.append({"score": float(acc), "acc": bool(acc), "pred": pred})
        return out

    monkeypatch.setattr(trainer, "sample", fixed_sample)
    monkeypatch.setattr(trainer, "score_responses", fixed_scores)
    policy, tokenizer = load_pretrained(tiny_base)
    metrics = trainer.validate(cfg, policy, tokenizer, rows, trainer.PromptCache(tokenizer),
                               torch.Generator().manual_seed(0), batch_questions=2)
    assert metrics == pytest.approx({
        "val-core/src_a/acc/mean@3": (1 / 3 + 1) / 2, "val-core/src_a/acc/maj@3/mean": (0 + 1) / 2,
        "val-core/src_b/acc/mean@3": 2 / 3, "val-core/src_b/acc/maj@3/mean": 1.0,
        "val-aux/response_length/mean": sum(lengths) / len(lengths),
    })
    assert len(lengths) == 9


def test_checkpoints_from_before_the_rng_state_was_dropped_still_load(tmp_path):
    """Older trainer_state.pt files carry an "rng" entry (python/numpy/torch states); it is ignored."""
    (tmp_path / "step_000001").mkdir()
    torch.save({"step": 1, "data_position": 2, "optimizer": {}, "scheduler": {},
                "rng": {"torch": torch.get_rng_state()}}, tmp_path / "step_000001" / "trainer_state.pt")
    state = checkpoint.load_state(tmp_path / "step_000001")
    assert (state.step, state.data_position) == (1, 2) and not hasattr(state, "rng")


def tensorboard_scalars(run_dir: str) -> dict[str, dict[int, float]]:
    """Every scalar in the run's TensorBoard event files: tag -> {step: value} (read with TensorBoard's reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_verl_tracking_writes_the_logged_metrics_to_tensorboard(fake_task, tiny_config):
    """verl's own Tracking (logger [console, tensorboard]): the event files in <run_dir>/tensorboard hold every
    metric of metrics.jsonl under the same name and step, validation before the first step included, and the
    cumulative step time is the running sum of the step times."""
    cfg = tiny_config(method="sc_sdpo", total_steps=3, val_every=1, logger=["console", "tensorboard"])
    train(cfg)
    log = read_log(cfg.run_dir)
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert all("val-core/fake_sum/acc/mean@2" in r for r in log)  # validated before step 1 and after every step
    assert [r["timing_s/step_cumulative"] for r in log] == pytest.approx(
        [0.0, *[sum(r["timing_s/step"] for r in log[1:i + 1]) for i in range(1, 4)]])
    scalars = tensorboard_scalars(cfg.run_dir)
    for record in log:
        for name, value in record.items():
            if name != "step":
                assert scalars[name][record["step"]] == pytest.approx(value, rel=1e-6), name
    assert len(scalars["actor/grad_norm"]) == 3 and len(scalars["val-core/fake_sum/acc/mean@2"]) == 4


def test_no_tracker_backend_writes_no_event_files(fake_task, tiny_config):
    cfg = tiny_config(method="grpo", total_steps=1, logger=[])
    train(cfg)
    assert not (Path(cfg.run_dir) / "tensorboard").exists() and len(read_log(cfg.run_dir)) == 2
