"""Loss aggregation against hand-worked values and verl's agg_loss."""

import pytest
import torch

from scsdpo_verl.core import aggregate_loss

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


def test_bad_mode_and_shapes():
    with pytest.raises(ValueError, match="mode"):
        aggregate_loss(LOSS, MASK, mode="token-sum-norm")
    with pytest.raises(ValueError, match="sample_weight"):
        aggregate_loss(LOSS, MASK, sample_weight=torch.ones(2))
