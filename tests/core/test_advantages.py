"""GRPO advantages against a statistics-module brute force and verl's own implementation."""

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scsdpo_verl.core import grpo_advantages


def _brute_force(rewards, ids, norm_by_std, eps):
    groups: dict = {}
    for r, g in zip(rewards, ids):
        groups.setdefault(g, []).append(r)
    out = []
    for r, g in zip(rewards, ids):
        members = groups[g]
        if len(members) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = statistics.fmean(members), statistics.stdev(members)
        out.append((r - mean) / (std + eps) if norm_by_std else r - mean)
    return out


def test_hand_worked_group():
    # rewards 1,0,0,1 -> mean .5 -> +-.5; unbiased std = sqrt(1/3)
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), ["q"] * 4)
    assert adv.tolist() == [0.5, -0.5, -0.5, 0.5]
    adv_std = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), ["q"] * 4, norm_by_std=True, eps=0.0)
    assert adv_std.tolist() == pytest.approx([0.5 / 3**-0.5, -0.5 / 3**-0.5] * 1 + [-0.5 / 3**-0.5, 0.5 / 3**-0.5])


def test_all_correct_all_wrong_groups_have_zero_advantage_no_nan():
    rewards = torch.tensor([1.0] * 8 + [0.0] * 8)
    for norm in (False, True):
        adv = grpo_advantages(rewards, ["a"] * 8 + ["b"] * 8, norm_by_std=norm)
        assert torch.isfinite(adv).all() and (adv == 0).all()


def test_singleton_group_follows_verl_convention():
    assert grpo_advantages(torch.tensor([1.0, 0.0]), ["a", "b"], norm_by_std=True, eps=0.0).tolist() == [1.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.integers(0, 4)), min_size=1, max_size=40),
    norm=st.booleans(),
)
def test_matches_brute_force(data, norm):
    rewards = [r for r, _ in data]
    ids = [g for _, g in data]
    got = grpo_advantages(torch.tensor(rewards, dtype=torch.float64), ids, norm_by_std=norm)
    assert got.tolist() == pytest.approx(_brute_force(rewards, ids, norm, 1e-6), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("norm", [False, True])
def test_matches_verl_core_algos(norm):
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    np = pytest.importorskip("numpy")
    gen = torch.Generator().manual_seed(1)
    rewards = (torch.rand(24, generator=gen) > 0.5).float()
    uid = np.array([f"q{i // 8}" for i in range(24)], dtype=object)
    token_rewards = torch.zeros(24, 5)
    token_rewards[:, -1] = rewards
    verl_adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_rewards, torch.ones(24, 5), uid, epsilon=1e-6, norm_adv_by_std_in_grpo=norm
    )
    torch.testing.assert_close(grpo_advantages(rewards, uid, norm_by_std=norm), verl_adv[:, 0])


def test_clipped_policy_loss_hand_worked():
    from scsdpo_verl.core import clipped_policy_loss

    old = torch.zeros(1, 4, dtype=torch.float64)
    # rho = 1.5, 0.5, 1.5, 1.0 with advantages +1, +1, -1, +2
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 1.0]], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, 2.0]], dtype=torch.float64)
    loss, clipped = clipped_policy_loss(logp, old, adv, clip_ratio_low=0.2, clip_ratio_high=0.28)
    # +A, rho 1.5 -> min(1.5, 1.28) = 1.28; +A, rho 0.5 -> 0.5 (unclipped side wins); -A, rho 1.5 -> 1.5; rho 1 -> 2
    torch.testing.assert_close(loss, torch.tensor([[-1.28, -0.5, 1.5, -2.0]], dtype=torch.float64))
    assert clipped.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    loss.sum().backward()
    # gradient flows only where the unclipped term is selected: d(-A rho)/dlogp = -A rho
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5, 1.5, -2.0]], dtype=torch.float64))
