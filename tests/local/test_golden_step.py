"""Golden steps: one ``train_step`` of the local trainer on the tiny model and a fixed batch, with every quantity
it computes (pass rates, advantages, demonstrations, teacher prompts, SC weights, teacher-forced logits, per-token
loss, loss, gradient, clipping, the AdamW step, the EMA teacher, the metrics) compared with an independent
computation written out here: hand-worked tables, or float64 plain torch on float64 copies of the models, one
unpadded sequence at a time. Nothing from ``scsdpo_verl.core`` or the trainer's helpers is called for an expected
value. Every knob that changes the step is set away from its default so that dropping it shows.

The same fixed batch drives the direction tests: a GRPO step raises the log-probability of the rewarded responses
and lowers that of the failed ones; an SDPO step moves the student toward the teacher on the responses' tokens.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scsdpo_verl.local import trainer
from scsdpo_verl.local.rollout import Rollout

N = 4  # rollouts per question
QUESTIONS = ["What is 3 + 4?", "What is 5 + 6?", "What is 1 + 1?", "What is 2 + 2?"]
# a system message per question, so that a teacher prompt built on another row's messages shows
SYSTEMS = [f"Answer as <answer>N</answer> (question {q + 1})." for q in range(len(QUESTIONS))]
# (response text, reward, ends with eos); a response without eos runs to the batch's full length
RESPONSES = [
    # q0: 2 of 4 succeed (reward >= 0.5); the third one's demonstration loses its <think> block
    ("<answer>7</answer>", 1.0, True), ("3 + 4 = 8", 0.0, True),
    ("<think>3 + 4</think> <answer>7</answer>", 0.7, True), ("<answer>12 + 3 + 4 + 5 + 6 + 7 + 8 + 9", 0.2, False),
    # q1: a lone success, which gets no teacher (never its own answer)
    ("<answer>10</answer>", 0.0, True), ("5 + 6 = 11 <answer>11</answer>", 0.9, True), ("11", 0.0, True),
    ("<answer>1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1", 0.3, False),
    # q2: no success: no teacher (unless feedback is on), GRPO still sees the rewards 0.4 and 0.1
    ("<answer>2</answer>", 0.0, True), ("9", 0.4, True), ("<answer>0</answer>", 0.0, True), ("2 + 2", 0.1, True),
    # q3: all succeed: SDPO distils them, SC-SDPO gives them weight 0 (p = 1)
    ("<answer>4</answer>", 1.0, True), ("2 + 2 = 4 <answer>4</answer>", 0.8, True), ("4", 0.6, True),
    ("<answer>4</answer>", 1.0, True),
]
FEEDBACK = [f"wrong {i}" if reward < 0.5 else "" for i, (_, reward, _) in enumerate(RESPONSES)]
# hand-worked from the table above (success threshold 0.5)
PASS_RATES = [0.5] * 4 + [0.25] * 4 + [0.0] * 4 + [1.0] * 4
DEMONSTRATIONS = ([RESPONSES[2][0].replace("<think>3 + 4</think> ", ""), RESPONSES[0][0], RESPONSES[0][0],
                   RESPONSES[0][0]]
                  + [RESPONSES[5][0], None, RESPONSES[5][0], RESPONSES[5][0]]
                  + [None] * 4
                  + [RESPONSES[13][0], RESPONSES[12][0], RESPONSES[12][0], RESPONSES[12][0]])

# every knob away from its default; is_clip < 1 so that the IS cap acts on-policy (ratio 1), grad_clip set
# per case below the gradient norm so that clipping fires
KNOBS = dict(questions_per_step=4, rollouts_per_question=N, temperature=0.7, lr=3e-3, warmup_steps=4,
             weight_decay=0.1, beta1=0.8, beta2=0.95, clip_ratio_low=0.1, clip_ratio_high=0.15, alpha=0.3,
             topk=7, is_clip=0.8, ema_rate=0.07, exponent=0.7, success_threshold=0.5)


def teacher_message(question: str, solution: str | None, feedback: str | None) -> str:
    """The SDPO reference's reprompt template, written out."""
    solution_block = f"\nCorrect solution:\n\n{solution}\n\n" if solution else ""
    feedback_block = (f"\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback}\n\n"
                      if feedback else "")
    return f"{question}{solution_block}{feedback_block}\n\nCorrectly solve the original question.\n"


def rows() -> list[dict]:
    return [{"data_source": "fake_sum", "prompt": [{"role": "system", "content": system},
                                                   {"role": "user", "content": question}],
             "reward_model": {"style": "rule", "ground_truth": "0"}, "extra_info": {"index": q}}
            for q, (system, question) in enumerate(zip(SYSTEMS, QUESTIONS))]


def chat_ids(tokenizer, system: str, user_text: str) -> list[int]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user_text}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Batch:
    texts: list[str]  # what the scorer sees: the text, or the decoded cut-off tokens of a response without eos
    tokens: list[list[int]]  # each response's tokens up to and including eos (the masked-in ones)
    response_ids: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T]


def fixed_batch(tokenizer, responses=RESPONSES) -> Batch:
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text, _, _ in responses]
    width = max(len(ids) + 1 for ids, (_, _, eos) in zip(encoded, responses) if eos)
    tokens = [[*ids, tokenizer.eos_token_id] if eos else ids[:width] for ids, (_, _, eos) in zip(encoded, responses)]
    assert all(len(t) == width for t, (_, _, eos) in zip(tokens, responses) if not eos)
    response_ids = torch.full((len(tokens), width), tokenizer.pad_token_id)
    response_mask = torch.zeros(len(tokens), width)
    for i, t in enumerate(tokens):
        response_ids[i, :len(t)] = torch.tensor(t)
        response_mask[i, :len(t)] = 1
    texts = [text if eos else tokenizer.decode(t) for t, (text, _, eos) in zip(tokens, responses)]
    return Batch(texts, tokens, response_ids, response_mask)


@pytest.fixture(scope="module")
def models(tiny_base):
    """(policy, teacher, tokenizer): the teacher is the policy with seeded noise, so that the two differ."""
    policy = AutoModelForCausalLM.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    teacher = copy.deepcopy(policy)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return policy, teacher.eval().requires_grad_(False), tokenizer


def run_step(cfg, models, monkeypatch, responses=RESPONSES) -> dict:
    """One train_step on fresh copies of the models, the rollout and scorer replaced by the fixed batch."""
    policy, teacher, tokenizer = (copy.deepcopy(models[0]), copy.deepcopy(models[1]), models[2])
    batch = fixed_batch(tokenizer, responses)
    questions = len(responses) // N

    def fixed_sample(model, prompt_ids, prompt_mask, *, temperature, generator, **_):
        assert model is policy and temperature == cfg.temperature
        return Rollout(prompt_ids, prompt_mask, batch.response_ids, batch.response_mask,
                       torch.zeros_like(batch.response_mask))

    def fixed_scores(batch_rows, texts):
        return [{"score": reward, "acc": reward >= 0.5, "pred": text[:3],
                 "feedback": f"wrong {i}" if reward < 0.5 else ""}
                for i, (text, (_, reward, _)) in enumerate(zip(texts, responses))]

    monkeypatch.setattr(trainer, "sample", fixed_sample)
    monkeypatch.setattr(trainer, "score_responses", fixed_scores)
    optimizer, scheduler = trainer.make_optimizer(cfg, policy)
    trace: dict = {}
    metrics = trainer.train_step(cfg, policy, None if cfg.method == "grpo" else teacher, optimizer, scheduler,
                                 tokenizer, rows()[:questions], list(range(questions)), trainer.PromptCache(tokenizer),
                                 torch.Generator().manual_seed(0), trace=trace)
    return {"metrics": metrics, "trace": trace, "policy": policy, "teacher": teacher, "optimizer": optimizer,
            "batch": batch}


# ------------------------------------------------------------------------------------------------ the reference
def float64_logits(model64, tokenizer, user_texts: list[str], tokens: list[list[int]], temperature: float):
    """Per sample (in batch order), the logits [L_i, V] that predict its L_i response tokens, given its question's
    system message and ``user_texts[i]``: one unpadded forward each."""
    out = []
    for i, (user_text, response) in enumerate(zip(user_texts, tokens)):
        prompt = chat_ids(tokenizer, SYSTEMS[i // N], user_text)
        logits = model64(input_ids=torch.tensor([prompt + response])).logits[0]
        out.append(logits[len(prompt) - 1:len(prompt) - 1 + len(response)] / temperature)
    return out


def divergence(student_logits, teacher_logits, *, alpha, topk, add_tail):
    """Generalized JSD on the student's top-k (+ tail bucket, or renormalised), per position: [L, V] -> [L]."""
    s_all, t_all = student_logits.log_softmax(-1), teacher_logits.log_softmax(-1)
    top = student_logits.detach().topk(topk + 1, dim=-1)
    assert (top.values[:, topk - 1] - top.values[:, topk]).min() > 1e-5, "top-k boundary too close to call"
    idx = top.indices[:, :topk]
    s, t = s_all.gather(-1, idx), t_all.gather(-1, idx)
    if add_tail:
        s = torch.cat([s, torch.log1p(-s.exp().sum(-1, keepdim=True))], -1)
        t = torch.cat([t, torch.log1p(-t.exp().sum(-1, keepdim=True))], -1)
    else:
        s, t = s - s.logsumexp(-1, keepdim=True), t - t.logsumexp(-1, keepdim=True)
    m = torch.log((1 - alpha) * s.exp() + alpha * t.exp())
    return (1 - alpha) * (s.exp() * (s - m)).sum(-1) + alpha * (t.exp() * (t - m)).sum(-1)


def expected_step(cfg, models) -> dict:
    """Everything one step should compute, in float64, from the config, the fixed batch and the models."""
    policy, teacher, tokenizer = models
    batch = fixed_batch(tokenizer)
    size = len(RESPONSES)
    rewards = torch.tensor([r for _, r, _ in RESPONSES], dtype=torch.float64)
    question = [QUESTIONS[i // N] for i in range(size)]
    out: dict = {"rewards": rewards}

    # GRPO advantages: reward minus the group mean, optionally over the group's (unbiased) std + 1e-6
    advantages = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        group = rewards[(i // N) * N:(i // N + 1) * N]
        advantages[i] = rewards[i] - group.mean()
        if cfg.norm_adv_by_std:
            advantages[i] /= group.std() + 1e-6
    out["advantages"] = advantages

    # teacher prompts: a demonstration, else (with include_feedback) the sample's own feedback
    feedback = [FEEDBACK[i] if cfg.include_feedback and not DEMONSTRATIONS[i] else None for i in range(size)]
    has_teacher = torch.tensor([bool(DEMONSTRATIONS[i]) or bool(feedback[i]) for i in range(size)])
    out["has_teacher"] = has_teacher
    out["teacher_texts"] = [teacher_message(question[i], DEMONSTRATIONS[i], feedback[i]) if has_teacher[i]
                            else question[i] for i in range(size)]
    if cfg.method == "sdpo":
        weight = has_teacher.double()
    else:  # [p(1-p)]^exponent on the samples with a teacher, normalised over those samples only
        p = torch.tensor(PASS_RATES, dtype=torch.float64)
        raw = torch.where(has_teacher, (p * (1 - p)) ** cfg.exponent, torch.zeros_like(p))
        z = raw.max() if cfg.normalize == "batch_max" else raw.sum() / has_teacher.sum()
        weight = raw / z
    out["weight"] = weight
    if cfg.method == "grpo":
        weight = torch.ones(size, dtype=torch.float64)

    # logits, per-token loss and loss in float64, with the gradient from autograd
    policy64, teacher64 = copy.deepcopy(policy).double(), copy.deepcopy(teacher).double()
    student = float64_logits(policy64, tokenizer, question, batch.tokens, cfg.temperature)
    out["student_logits"] = [s.detach() for s in student]
    per_token = []
    if cfg.method == "grpo":
        for i, logits in enumerate(student):
            logp = logits.log_softmax(-1).gather(-1, torch.tensor(batch.tokens[i])[:, None])[:, 0]
            ratio = torch.exp(logp - logp.detach())
            a = advantages[i]
            per_token.append(torch.maximum(-a * ratio, -a * ratio.clamp(1 - cfg.clip_ratio_low,
                                                                        1 + cfg.clip_ratio_high)))
    else:
        with torch.no_grad():
            teacher_logits = float64_logits(teacher64, tokenizer, out["teacher_texts"], batch.tokens, cfg.temperature)
        out["teacher_logits"] = teacher_logits
        for i, logits in enumerate(student):
            if has_teacher[i]:  # on-policy the IS ratio is 1, so its cap min(1, is_clip) is the factor
                d = divergence(logits, teacher_logits[i], alpha=cfg.alpha, topk=cfg.topk, add_tail=cfg.add_tail)
                per_token.append(d * min(1.0, cfg.is_clip))
            else:
                per_token.append(torch.zeros(len(batch.tokens[i]), dtype=torch.float64))
    out["per_token_loss"] = [t.detach() for t in per_token]
    if cfg.loss_agg_mode == "token-mean":  # all response tokens of the batch (with a teacher or not)
        loss = sum(weight[i] * t.sum() for i, t in enumerate(per_token)) / sum(len(t) for t in per_token)
    else:  # seq-mean-token-mean: each sample's token mean once, over all samples of the batch
        loss = sum(weight[i] * t.mean() for i, t in enumerate(per_token)) / size
    loss.backward()
    out["loss"] = float(loss.detach())
    out["grad"] = {name: p.grad.detach() for name, p in policy64.named_parameters()}
    out["grad_norm"] = math.sqrt(sum(float((g**2).sum()) for g in out["grad"].values()))
    return out


def adamw_first_step(cfg, theta: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(parameter after AdamW's first step, exp_avg) at the warm-up's first learning rate, in float64."""
    lr = cfg.lr * min(1.0, 1 / cfg.warmup_steps)
    m, v = (1 - cfg.beta1) * grad, (1 - cfg.beta2) * grad**2
    m_hat, v_hat = m / (1 - cfg.beta1), v / (1 - cfg.beta2)
    return theta * (1 - lr * cfg.weight_decay) - lr * m_hat / (v_hat.sqrt() + 1e-8), m


def rows_of(tensor: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
    """A [B, T, ...] tensor's masked-in positions, per sample."""
    return [tensor[i, :len(t)] for i, t in enumerate(batch.tokens)]


CASES = [  # (method, loss_agg_mode, other knobs)
    ("grpo", "token-mean", dict(norm_adv_by_std=True)),
    ("grpo", "seq-mean-token-mean", dict(micro_batch_size=5)),
    ("sdpo", "token-mean", dict(micro_batch_size=5, add_tail=False)),
    ("sdpo", "seq-mean-token-mean", dict(include_feedback=True)),
    ("sc_sdpo", "token-mean", dict(normalize="batch_max")),
    ("sc_sdpo", "seq-mean-token-mean", dict(micro_batch_size=5)),
]


@pytest.mark.parametrize(("method", "agg", "knobs"), CASES, ids=[f"{m}-{a}-{'-'.join(k)}" for m, a, k in CASES])
def test_one_step_equals_an_independent_float64_computation(models, tiny_config, monkeypatch, method, agg, knobs):
    cfg = tiny_config(method=method, loss_agg_mode=agg, **KNOBS, **knobs)
    expected = expected_step(cfg, models)
    # clipping must fire: the threshold is a fraction of this case's gradient norm
    cfg = dataclasses.replace(cfg, grad_clip=0.4 * expected["grad_norm"])
    got = run_step(cfg, models, monkeypatch)
    trace, metrics, batch = got["trace"], got["metrics"], got["batch"]
    close = dict(rtol=1e-4, atol=1e-6)

    # 1-2. rollouts, rewards, pass rates, then advantages or teacher prompts and weights
    assert trace["texts"] == batch.texts
    assert trace["rewards"].tolist() == pytest.approx(expected["rewards"].tolist())
    assert trace["success"].tolist() == [r >= 0.5 for r in expected["rewards"].tolist()]
    assert trace["pass_rate"].tolist() == PASS_RATES
    assert metrics["sc/pass_rate_mean"] == pytest.approx(sum(PASS_RATES) / len(PASS_RATES))
    assert [metrics[f"sc/pass_rate_hist/{k}"] for k in range(N + 1)] == [1, 1, 1, 0, 1]
    assert metrics["critic/score/mean"] == pytest.approx(float(expected["rewards"].mean()))
    if method == "grpo":
        torch.testing.assert_close(trace["advantages"][:, 0].double(), expected["advantages"], **close)
        lengths = batch.response_mask.sum(-1).double()
        assert metrics["critic/advantages/mean"] == pytest.approx(
            float((expected["advantages"] * lengths).sum() / lengths.sum()), rel=1e-5, abs=1e-7)
    else:
        assert trace["demonstrations"] == DEMONSTRATIONS
        assert trace["teacher_texts"] == expected["teacher_texts"]
        assert trace["has_teacher"].tolist() == expected["has_teacher"].tolist()
        torch.testing.assert_close(trace["weight"].double(), expected["weight"], **close)
        active = expected["has_teacher"]
        assert metrics["self_distillation/reprompt_sample_fraction"] == pytest.approx(float(active.double().mean()))
        assert metrics["sc/weight_mean"] == pytest.approx(float(expected["weight"][active].mean()), rel=1e-5)
        assert metrics["sd/num_tokens"] == sum(len(t) for i, t in enumerate(batch.tokens) if active[i])

    # 3. teacher-forced logits (temperature applied), per-token loss, loss, gradient
    for got_rows, want in zip(rows_of(trace["student_logits"], batch), expected["student_logits"]):
        torch.testing.assert_close(got_rows.double(), want, rtol=1e-4, atol=1e-4)
    if method != "grpo":
        for i, (got_rows, want) in enumerate(zip(rows_of(trace["teacher_logits"], batch), expected["teacher_logits"])):
            if expected["has_teacher"][i]:
                torch.testing.assert_close(got_rows.double(), want, rtol=1e-4, atol=1e-4)
        # off the response (padding) the per-token loss is 0
        assert (trace["per_token_loss"] * (1 - batch.response_mask) == 0).all()
    for got_rows, want in zip(rows_of(trace["per_token_loss"], batch), expected["per_token_loss"]):
        torch.testing.assert_close(got_rows.double(), want, **close)
    assert metrics["actor/pg_loss"] == pytest.approx(expected["loss"], rel=1e-4, abs=1e-7)
    assert trace["grad"].keys() == expected["grad"].keys()
    for name, g in expected["grad"].items():
        torch.testing.assert_close(trace["grad"][name].double(), g, rtol=1e-3, atol=1e-5 * float(g.abs().max()) + 1e-9)
    assert metrics["actor/grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-4)

    # 4. clipping (fires), AdamW's first step at the warm-up learning rate, then the EMA teacher; the optimizer is
    # checked from the trainer's own recorded gradient (already compared above), as AdamW's first step is close to
    # lr * sign(g) and would amplify float32 noise in near-zero gradients
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in trace["grad"].values()))
    coefficient = cfg.grad_clip / (norm + 1e-6)
    assert coefficient < 1
    policy0, teacher0 = models[0].state_dict(), models[1].state_dict()
    params = dict(got["policy"].named_parameters())
    for name, g in trace["grad"].items():
        theta, exp_avg = adamw_first_step(cfg, policy0[name].double(), coefficient * g.double())
        torch.testing.assert_close(got["optimizer"].state[params[name]]["exp_avg"].double(), exp_avg,
                                   rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(params[name].detach().double(), theta, rtol=1e-5, atol=1e-7)
    assert metrics["actor/lr"] == pytest.approx(cfg.lr * min(1.0, 2 / cfg.warmup_steps))
    assert metrics["actor/update_skipped"] == 0.0
    if method != "grpo":
        after = got["policy"].state_dict()
        for name, value in got["teacher"].state_dict().items():
            want = (1 - cfg.ema_rate) * teacher0[name].double() + cfg.ema_rate * after[name].double()
            torch.testing.assert_close(value.double(), want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- direction tests
# rewarded responses give the answer in its tags, failed ones repeat a number: few shared tokens besides eos
DIRECTION_RESPONSES = [("<answer>7</answer>", 1.0, True), ("3 3 3", 0.0, True), ("<answer>7</answer>", 1.0, True),
                       ("8 8", 0.0, True), ("9 9 9 9", 0.0, True), ("<answer>11</answer>", 1.0, True),
                       ("1 1", 0.0, True), ("<answer>11</answer>", 1.0, True)]


def sequence_logprobs(model, tokenizer, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        logits = float64_logits(copy.deepcopy(model).double(), tokenizer,
                                [QUESTIONS[i // N] for i in range(len(batch.tokens))], batch.tokens, 1.0)
    return torch.stack([row.log_softmax(-1).gather(-1, torch.tensor(t)[:, None]).sum()
                        for row, t in zip(logits, batch.tokens)])


def test_a_grpo_step_raises_rewarded_responses_and_lowers_failed_ones(models, tiny_config, monkeypatch):
    cfg = tiny_config(method="grpo", questions_per_step=2, rollouts_per_question=N, lr=1e-2, warmup_steps=0)
    got = run_step(cfg, models, monkeypatch, DIRECTION_RESPONSES)
    tokenizer = models[2]
    change = sequence_logprobs(got["policy"], tokenizer, got["batch"]) - sequence_logprobs(models[0], tokenizer,
                                                                                            got["batch"])
    rewarded = torch.tensor([reward == 1.0 for _, reward, _ in DIRECTION_RESPONSES])  # 2 of 4 in each group
    assert (change[rewarded] > 0).all(), change
    assert (change[~rewarded] < 0).all(), change


def test_an_sdpo_step_moves_the_student_toward_the_teacher(models, tiny_config, monkeypatch):
    cfg = tiny_config(method="sdpo", questions_per_step=4, rollouts_per_question=N, lr=1e-3, warmup_steps=0)
    got = run_step(cfg, models, monkeypatch)
    policy0, teacher0, tokenizer = models
    batch = got["batch"]
    questions = [QUESTIONS[i // N] for i in range(len(RESPONSES))]
    active = torch.tensor([d is not None for d in DEMONSTRATIONS])
    teacher_texts = [teacher_message(q, d, None) if d else q for q, d in zip(questions, DEMONSTRATIONS)]

    def kl_teacher_student(student_model) -> torch.Tensor:  # per sample, mean over its tokens, full vocabulary
        with torch.no_grad():
            student = float64_logits(student_model.double(), tokenizer, questions, batch.tokens, 1.0)
            teacher = float64_logits(copy.deepcopy(teacher0).double(), tokenizer, teacher_texts, batch.tokens, 1.0)
        return torch.stack([(t.softmax(-1) * (t.log_softmax(-1) - s.log_softmax(-1))).sum(-1).mean()
                            for s, t in zip(student, teacher)])

    before, after = kl_teacher_student(copy.deepcopy(policy0)), kl_teacher_student(copy.deepcopy(got["policy"]))
    assert (after[active] < before[active]).all(), (before, after)
