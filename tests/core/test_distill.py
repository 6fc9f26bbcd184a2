"""Self-distillation divergences against float64 brute force, torch's kl_div, and finite differences."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scsdpo_verl.core import (
    gathered_logprobs,
    generalized_jsd,
    importance_weights,
    sampled_token_distillation_loss,
    self_distillation_loss,
    token_logprobs,
    topk_divergence,
)


def _logits(b=2, t=3, v=11, seed=0, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, v, generator=gen, dtype=dtype) * scale


def _brute_force_token(student_row, teacher_row, alpha, topk, add_tail):
    """One position, numpy float64, written from the definition with explicit loops."""
    s = np.exp(student_row - student_row.max())
    s /= s.sum()
    t = np.exp(teacher_row - teacher_row.max())
    t /= t.sum()
    if topk is not None and topk < len(s):
        idx = np.argsort(-student_row, kind="stable")[:topk]
        s_sup, t_sup = s[idx], t[idx]
        if add_tail:
            s_sup = np.append(s_sup, 1 - s_sup.sum())
            t_sup = np.append(t_sup, 1 - t_sup.sum())
        else:
            s_sup, t_sup = s_sup / s_sup.sum(), t_sup / t_sup.sum()
    else:
        s_sup, t_sup = s, t

    def kl(p, q):
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)

    if alpha == 0:
        return kl(t_sup, s_sup)
    if alpha == 1:
        return kl(s_sup, t_sup)
    m = (1 - alpha) * s_sup + alpha * t_sup
    return (1 - alpha) * kl(s_sup, m) + alpha * kl(t_sup, m)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize(("topk", "add_tail"), [(None, True), (4, True), (4, False), (1, True), (11, True)])
def test_matches_float64_brute_force(alpha, topk, add_tail):
    student, teacher = _logits(seed=1), _logits(seed=2)
    mask = torch.ones(2, 3)
    loss, _ = self_distillation_loss(student, teacher, mask, alpha=alpha, topk=topk, add_tail=add_tail, is_clip=None)
    for b in range(2):
        for t in range(3):
            expected = _brute_force_token(student[b, t].numpy(), teacher[b, t].numpy(), alpha, topk, add_tail)
            assert float(loss[b, t]) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_alpha_edges_equal_torch_kl_div():
    student, teacher = _logits(seed=3), _logits(seed=4)
    mask = torch.ones(2, 3)
    s_logp, t_logp = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
    forward, _ = self_distillation_loss(student, teacher, mask, alpha=0.0, topk=None)
    reverse, _ = self_distillation_loss(student, teacher, mask, alpha=1.0, topk=None)
    # kl_div(input=log q, target=log p, log_target=True) = KL(p || q)
    torch.testing.assert_close(forward, F.kl_div(s_logp, t_logp, log_target=True, reduction="none").sum(-1))
    torch.testing.assert_close(reverse, F.kl_div(t_logp, s_logp, log_target=True, reduction="none").sum(-1))


def test_topk_none_equals_plain_full_vocab_jsd():
    student, teacher = _logits(seed=5), _logits(seed=6)
    p, q = F.softmax(student, -1), F.softmax(teacher, -1)
    m = 0.5 * (p + q)
    plain = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
    got, _ = self_distillation_loss(student, teacher, torch.ones(2, 3), topk=None)
    torch.testing.assert_close(got, plain)


def test_jsd_zero_for_equal_distributions_and_symmetric_at_half():
    student, teacher = _logits(seed=7), _logits(seed=8)
    same, _ = self_distillation_loss(student, student.clone(), torch.ones(2, 3), topk=None)
    torch.testing.assert_close(same, torch.zeros(2, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    s_logp, t_logp = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
    torch.testing.assert_close(generalized_jsd(s_logp, t_logp, 0.5), generalized_jsd(t_logp, s_logp, 0.5))


def test_teacher_gets_no_gradient_and_student_gradient_matches_finite_differences():
    student = _logits(b=1, t=2, v=7, seed=9).requires_grad_(True)
    teacher = _logits(b=1, t=2, v=7, seed=10).requires_grad_(True)
    mask = torch.tensor([[1.0, 0.0]])

    def scalar(x):
        return self_distillation_loss(x, teacher, mask, topk=3, add_tail=True)[0].sum()

    scalar(student).backward()
    assert teacher.grad is None
    assert torch.autograd.gradcheck(scalar, (student,), eps=1e-6, atol=1e-7)
    assert (student.grad[0, 1] == 0).all()  # masked position: exactly no gradient


def test_masked_tokens_are_ignored_exactly():
    student, teacher = _logits(seed=11), _logits(seed=12)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    loss, _ = self_distillation_loss(student, teacher, mask)
    student2, teacher2 = student.clone(), teacher.clone()
    student2[0, 2] = 1e3 * torch.randn(11, dtype=torch.float64)
    teacher2[1] = -7.0
    loss2, _ = self_distillation_loss(student2, teacher2, mask)
    assert torch.equal(loss, loss2)
    assert (loss[~mask] == 0).all()


def test_empty_mask_and_one_token_response():
    student, teacher = _logits(b=2, t=1, seed=13), _logits(b=2, t=1, seed=14)
    loss, metrics = self_distillation_loss(student, teacher, torch.zeros(2, 1))
    assert (loss == 0).all() and metrics["sd/num_tokens"] == 0.0 and metrics["sd/divergence_mean"] == 0.0
    loss, _ = self_distillation_loss(student, teacher, torch.ones(2, 1))
    assert torch.isfinite(loss).all() and (loss > 0).all()


def test_tail_is_finite_when_topk_holds_all_mass():
    student = torch.full((1, 1, 5), -1e4, dtype=torch.float32)
    student[..., 0] = 0.0  # the top-1 holds all probability
    loss, _ = self_distillation_loss(student, student.clone(), torch.ones(1, 1), topk=1)
    assert torch.isfinite(loss).all() and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_importance_weight_is_capped_and_detached():
    student, teacher = _logits(b=1, t=3, seed=15).requires_grad_(True), _logits(b=1, t=3, seed=16)
    base, _ = self_distillation_loss(student, teacher, torch.ones(1, 3), is_clip=None)
    logprobs = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[0.0, -0.5, -30.0]])  # ratios 1, e^0.5, e^20 (clamped) -> capped at 2
    loss, metrics = self_distillation_loss(
        student, teacher, torch.ones(1, 3), old_logprobs=old, logprobs=logprobs, is_clip=2.0
    )
    expected = base * torch.tensor([[1.0, math.exp(0.5), 2.0]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected.detach())
    assert metrics["sd/is_clipfrac"] == pytest.approx(1 / 3)
    loss.sum().backward()
    assert logprobs.grad is None
    with pytest.raises(ValueError, match="together"):
        self_distillation_loss(student, teacher, torch.ones(1, 3), old_logprobs=old)


def test_importance_weight_is_capped_from_above_only():
    """Ratios below 1 keep their value (no floor); above the cap they become the cap; the log-ratio is clamped at
    +-20 first. Both the weights alone and their effect on the SDPO per-token loss, sampled-token form included."""
    logprobs = torch.tensor([[0.0, -0.7, -3.0, 0.0, 0.4, -30.0, 25.0]], dtype=torch.float64)
    old = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]], dtype=torch.float64)
    ratios = [1.0, math.exp(-0.7), math.exp(-3.0), math.exp(-0.5), math.exp(0.4), math.exp(-20.0), math.exp(20.0)]
    expected = torch.tensor([[min(r, 1.3) for r in ratios]], dtype=torch.float64)
    assert (expected < 1).sum() == 4  # four ratios below 1, one of them clamped in log space
    torch.testing.assert_close(importance_weights(logprobs, old, 1.3), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(importance_weights(logprobs, old, None)[0, :5], torch.tensor(ratios[:5]).double())

    student, teacher = _logits(b=1, t=7, seed=19), _logits(b=1, t=7, seed=20)
    mask = torch.ones(1, 7)
    base, _ = self_distillation_loss(student, teacher, mask, is_clip=None)
    weighted, metrics = self_distillation_loss(student, teacher, mask, old_logprobs=old, logprobs=logprobs, is_clip=1.3)
    torch.testing.assert_close(weighted, base * expected)
    assert metrics["sd/is_ratio_mean"] == pytest.approx(float(expected.mean()))
    sampled_base, _ = sampled_token_distillation_loss(logprobs, old, mask, is_clip=None)
    sampled, _ = sampled_token_distillation_loss(logprobs, old, mask, old_logprobs=old, is_clip=1.3)
    torch.testing.assert_close(sampled, sampled_base * expected)


def test_half_precision_inputs_are_computed_in_fp32():
    student, teacher = _logits(dtype=torch.float32, seed=17), _logits(dtype=torch.float32, seed=18)
    ref, _ = self_distillation_loss(student, teacher, torch.ones(2, 3))
    got, _ = self_distillation_loss(student.bfloat16(), teacher.bfloat16(), torch.ones(2, 3))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=0.05, rtol=0.05)


def test_shape_errors():
    with pytest.raises(ValueError, match="logits"):
        self_distillation_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2))
    with pytest.raises(ValueError, match="response_mask"):
        self_distillation_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        self_distillation_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 2), alpha=1.5)


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.floats(0.0, 1.0),
    topk=st.one_of(st.none(), st.integers(1, 9)),
    seed=st.integers(0, 10_000),
)
def test_divergence_properties(alpha, topk, seed):
    student, teacher = _logits(seed=seed), _logits(seed=seed + 1)
    loss, _ = self_distillation_loss(student, teacher, torch.ones(2, 3), alpha=alpha, topk=topk)
    assert torch.isfinite(loss).all() and (loss >= -1e-12).all()
    zero, _ = self_distillation_loss(student, student.clone(), torch.ones(2, 3), alpha=alpha, topk=topk)
    assert zero.abs().max() < 1e-10


def test_sampled_token_form_gradient_is_advantage_times_score():
    student_lp = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64, requires_grad=True)
    teacher_lp = torch.tensor([[-0.5, -3.0, -0.5]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, metrics = sampled_token_distillation_loss(student_lp, teacher_lp, mask)
    # A = teacher - student = [0.5, -1.0, 0]; l = -A * log pi_S; dl/dlogpi = -A
    torch.testing.assert_close(loss, torch.tensor([[0.5, -2.0, 0.0]], dtype=torch.float64))
    loss.sum().backward()
    torch.testing.assert_close(student_lp.grad, torch.tensor([[-0.5, 1.0, 0.0]], dtype=torch.float64))
    assert metrics["sd/token_advantage_mean"] == pytest.approx(-0.25)


def test_sampled_token_form_expected_gradient_is_reverse_kl_gradient():
    # E_{y~pi_S}[-(log pi_T(y) - log pi_S(y)) grad log pi_S(y)] = grad KL(pi_S || pi_T), summed exactly over V
    logits = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    teacher_logp = torch.log_softmax(torch.randn(6, dtype=torch.float64), -1)
    logp = torch.log_softmax(logits, -1)
    probs = logp.exp().detach()
    per_token, _ = sampled_token_distillation_loss(logp.view(1, 6), teacher_logp.view(1, 6), torch.ones(1, 6))
    (per_token.view(6) * probs).sum().backward()
    grad_estimator = logits.grad.clone()
    logits.grad = None
    kl = (torch.log_softmax(logits, -1).exp() * (torch.log_softmax(logits, -1) - teacher_logp)).sum()
    kl.backward()
    torch.testing.assert_close(grad_estimator, logits.grad)


def test_token_logprobs_matches_log_softmax_gather():
    logits = _logits(seed=19)
    ids = torch.randint(0, 11, (2, 3))
    expected = F.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logprobs(logits, ids), expected)


@pytest.mark.parametrize("chunk_rows", [None, 1, 2, 5, 64])
def test_gathered_logprobs_equal_log_softmax_at_the_indices_chunked_or_not(chunk_rows):
    logits = _logits(b=1, t=7, v=13, seed=5)[0].requires_grad_(True)  # [7, 13]
    indices = torch.stack([torch.randperm(13, generator=torch.Generator().manual_seed(i))[:4] for i in range(7)])
    got = gathered_logprobs(logits, indices, chunk_rows=chunk_rows)
    expected = torch.stack([torch.tensor([math.log(math.exp(logits[r, j].item()) /
                                                   sum(math.exp(x) for x in logits[r].tolist()))
                                          for j in indices[r].tolist()], dtype=torch.float64) for r in range(7)])
    assert torch.allclose(got.detach(), expected, atol=1e-12)
    weights = torch.linspace(-1, 1, 28, dtype=torch.float64).view(7, 4)
    (grad,) = torch.autograd.grad((got * weights).sum(), logits)
    # d/dz_v [z_j - logsumexp z] = 1[v = j] - softmax(z)_v
    probs = torch.softmax(logits.detach(), -1)
    expected_grad = torch.zeros_like(probs)
    for r in range(7):
        for c, j in enumerate(indices[r].tolist()):
            expected_grad[r, j] += weights[r, c]
            expected_grad[r] -= weights[r, c] * probs[r]
    assert torch.allclose(grad, expected_grad, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("add_tail", [True, False])
def test_topk_divergence_on_gathered_logprobs_matches_brute_force(alpha, add_tail):
    student, teacher = _logits(b=1, t=4, v=9, seed=11)[0], _logits(b=1, t=4, v=9, seed=12)[0]
    idx = student.topk(3, dim=-1).indices
    got = topk_divergence(gathered_logprobs(student, idx), gathered_logprobs(teacher, idx), alpha, add_tail=add_tail)
    for t in range(4):
        expected = _brute_force_token(student[t].numpy(), teacher[t].numpy(), alpha, 3, add_tail)
        assert got[t].item() == pytest.approx(expected, abs=1e-12)
