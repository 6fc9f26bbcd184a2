"""Loss aggregation against hand-worked values and verl's agg_loss."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scsdpo_verl.core import aggregate_loss, loss_normalizer

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_hand_worked_modes():
    # masked-in: row0 1,2 ; row1 4 ; row2 nothing
    assert float(aggregate_loss(LOSS, MASK, mode="token-mean")) == pytest.approx(7 / 3)
    assert float(aggregate_loss(LOSS, MASK, mode="seq-mean-token-mean")) == pytest.approx((1.5 + 4) / 2)
    assert float(aggregate_loss(LOSS, MASK, mode="seq-mean-token-sum")) == pytest.approx((3 + 4) / 2)


def test_sample_weight_multiplies_every_token_not_the_denominator():
    w = torch.tensor([2.0, 0.5, 100.0])
    assert float(aggregate_loss(LOSS, MASK, sample_weight=w)) == pytest.approx((2 * 3 + 0.5 * 4) / 3)
    assert float(aggregate_loss(LOSS, MASK, sample_weight=w, mode="seq-mean-token-mean")) == pytest.approx(
        (2 * 1.5 + 0.5 * 4) / 2
    )


def test_empty_mask_gives_zero_with_graph_and_no_nan():
    loss = LOSS.clone().requires_grad_(True)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        out = aggregate_loss(loss, torch.zeros(3, 3), mode=mode)
        assert float(out.detach()) == 0.0
        out.backward()
        assert (loss.grad == 0).all()


def test_masked_garbage_is_ignored():
    garbage = LOSS.clone()
    garbage[2] = float("nan")
    garbage[0, 2] = float("inf")
    loss = garbage.requires_grad_(True)
    out = aggregate_loss(loss, MASK)
    assert float(out.detach()) == pytest.approx(7 / 3)
    out.backward()
    assert torch.isfinite(loss.grad).all()


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_matches_verl_agg_loss_with_weights_multiplied_in(mode):
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 9, generator=gen)
    mask = (torch.rand(6, 9, generator=gen) > 0.4).float()
    mask[3] = 0
    w = torch.rand(6, generator=gen)
    ours = aggregate_loss(loss, mask, sample_weight=w, mode=mode)
    theirs = core_algos.agg_loss(loss * w[:, None], mask, mode)
    torch.testing.assert_close(ours, theirs)


def test_loss_normalizer_hand_worked():
    assert float(loss_normalizer(MASK, "token-mean")) == 3  # tokens
    assert float(loss_normalizer(MASK, "seq-mean-token-mean")) == 2  # rows with >= 1 token
    assert float(loss_normalizer(MASK, "seq-mean-token-sum")) == 2
    assert float(loss_normalizer(torch.zeros(3, 3), "token-mean")) == 1  # never 0
    with pytest.raises(ValueError, match="mode"):
        loss_normalizer(MASK, "token-sum")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 6),
    micro=st.integers(1, 9),
    mode=st.sampled_from(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]),
    seed=st.integers(0, 2**16),
)
def test_micro_batches_with_the_batch_normalizer_sum_to_the_batch_loss_and_gradient(rows, cols, micro, mode, seed):
    """Gradient accumulation law: sum over row chunks of aggregate_loss(chunk, normalizer=N(batch)) equals
    aggregate_loss(batch), value and gradient (float64; empty rows and empty chunks included)."""
    gen = torch.Generator().manual_seed(seed)
    loss = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    mask = (torch.rand(rows, cols, generator=gen) > 0.5).double()
    weight = torch.rand(rows, generator=gen, dtype=torch.float64)
    full_input = loss.clone().requires_grad_(True)
    full = aggregate_loss(full_input, mask, sample_weight=weight, mode=mode)
    full.backward()
    chunk_input = loss.clone().requires_grad_(True)
    normalizer = loss_normalizer(mask, mode)
    total = sum(
        aggregate_loss(chunk_input[i:i + micro], mask[i:i + micro], sample_weight=weight[i:i + micro], mode=mode,
                       normalizer=normalizer)
        for i in range(0, rows, micro)
    )
    total.backward()
    torch.testing.assert_close(total, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunk_input.grad, full_input.grad, rtol=1e-12, atol=1e-12)


def test_bad_mode_and_shapes():
    with pytest.raises(ValueError, match="mode"):
        aggregate_loss(LOSS, MASK, mode="token-sum-norm")
    with pytest.raises(ValueError, match="sample_weight"):
        aggregate_loss(LOSS, MASK, sample_weight=torch.ones(2))
