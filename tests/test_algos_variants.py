"""GRPO variants' maths (advantages, token losses, aggregation, mismatch correction, entropy control,
Clip-Cov / KL-Cov, dynamic sampling) against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from rl.algos import (
    ADVANTAGES,
    AGGREGATIONS,
    CORRECTIONS,
    TOKEN_LOSSES,
    EntropyController,
    aggregate,
    clip_cov_mask,
    detach_where,
    dr_grpo_advantages,
    group_reward_std,
    gspo_token_loss,
    informative_groups,
    kl_cov_penalty,
    mismatch_kl,
    mismatch_weights,
    ppo_clip_token_loss,
    rloo_advantages,
    token_covariance,
    token_entropy,
)
from rl.config import EntropyConfig

E = math.exp


def test_registries() -> None:
    assert set(ADVANTAGES) == {"grpo", "dr_grpo", "rloo"}
    assert TOKEN_LOSSES == {"ppo_clip": ppo_clip_token_loss, "gspo": gspo_token_loss}
    assert set(AGGREGATIONS) == {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"}
    assert set(CORRECTIONS) == {"tis", "mis_token", "mis_seq"}


# ---------------------------------------------------------------- advantages, dynamic sampling

REWARDS = torch.tensor([1.0, 0.0, 1.0, 0.0, 3.0, 1.0, 2.0, 2.0])


def test_dr_grpo_advantages_hand_values() -> None:
    # group means 0.5 and 2: A = r - mean, no std division
    adv = dr_grpo_advantages(REWARDS, group_size=4)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, 0.5, -0.5, 1.0, -1.0, 0.0, 0.0]))


def test_rloo_advantages_hand_values() -> None:
    # 1 - mean(0,1,0) = 2/3, 0 - mean(1,1,0) = -2/3; 3 - mean(1,2,2) = 4/3, 1 - mean(3,2,2) = -4/3, 2 - mean(3,1,2) = 0
    adv = rloo_advantages(REWARDS, group_size=4)
    assert torch.allclose(adv, torch.tensor([2 / 3, -2 / 3, 2 / 3, -2 / 3, 4 / 3, -4 / 3, 0.0, 0.0]))
    assert torch.equal(rloo_advantages(torch.ones(3), group_size=3), torch.zeros(3))
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(torch.ones(3), group_size=1)
    with pytest.raises(ValueError, match="group_size=4"):
        dr_grpo_advantages(torch.zeros(6), group_size=4)


def test_group_reward_std_leaves_out_the_spread_between_prompts() -> None:
    # two groups of 3 a hundred apart: the batch std is ~55, the mean within-group std 1
    rewards = torch.tensor([0.0, 1.0, 2.0, 100.0, 101.0, 102.0])
    assert rewards.std().item() > 50 and group_reward_std(rewards, group_size=3) == pytest.approx(1.0)
    # unscored (NaN) completions are left out; a group with one scored reward has no spread to report
    assert group_reward_std(torch.tensor([0.0, 2.0, float("nan"), 5.0, float("nan"), float("nan")]), 3) == \
        pytest.approx(2 ** 0.5)
    assert group_reward_std(torch.tensor([1.0, float("nan")]), 2) is None
    # equal to the group-by-group definition on random groups with unscored members
    rewards = torch.rand(64 * 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rewards[torch.rand(64 * 8, generator=torch.Generator().manual_seed(1)) < 0.4] = float("nan")
    stds = [g[~g.isnan()].std().item() for g in rewards.view(64, 8) if (~g.isnan()).sum() >= 2]
    assert group_reward_std(rewards, 8) == pytest.approx(sum(stds) / len(stds), rel=1e-12)


def test_informative_groups() -> None:
    rewards = torch.tensor([1, 1, 1, 0, 1, 0, 0.5, 0.5, 0.5 + 1e-12, 2, 2, 2 + 1e-6], dtype=torch.float64)
    assert informative_groups(rewards, group_size=3).tolist() == [False, True, False, True]
    assert informative_groups(torch.zeros(4), group_size=2).tolist() == [False, False]


# ---------------------------------------------------------------- token losses

def _ppo(lp, old, adv, mask, **kw):
    kw = {"eps_low": 0.2, "eps_high": 0.2, **kw}
    return ppo_clip_token_loss(torch.tensor(lp), torch.tensor(old), torch.tensor(adv), torch.tensor(mask), **kw)


def test_ppo_clip_token_loss_hand_values_and_garbage_padding() -> None:
    # seq 1: ρ = e^0.5 (A=+1, clipped to 1.2), ρ = e^-0.5 (A=+1, unclipped is the min), padding (old = -inf).
    # seq 2: ρ = e^0.1, A = -2 → -min(-2.2103, -2.2) = 2.2103 (unclipped); padding holds nan / inf.
    inf, nan = math.inf, math.nan
    loss, stats = _ppo([[0.5, -0.5, 0.0], [0.1, nan, inf]], [[0.0, 0.0, -inf], [0.0, 0.0, 0.0]],
                       [1.0, -2.0], [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(loss, torch.tensor([[-1.2, -E(-0.5), 0.0], [2 * E(0.1), 0.0, 0.0]]))
    assert torch.allclose(stats["ratio"], torch.tensor([[E(0.5), E(-0.5), 0.0], [E(0.1), 0.0, 0.0]]))
    assert stats["clipped"].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert stats["dual_clipped"].sum() == 0


def test_ppo_clip_token_loss_per_token_advantages_and_gradient() -> None:
    # ρ = 2 with A = -1: -min(-2, -1.2) = 2, unclipped, dL/dlogπ = -A·ρ = 2; ρ = 1.1 with A = +3: -3.3, grad -3.3
    lp = torch.tensor([[math.log(2.0), math.log(1.1)]], requires_grad=True)
    loss, _ = ppo_clip_token_loss(lp, torch.zeros(1, 2), torch.tensor([[-1.0, 3.0]]), torch.ones(1, 2),
                                  eps_low=0.2, eps_high=0.28)
    assert torch.allclose(loss, torch.tensor([[2.0, -3.3]]))
    loss.sum().backward()
    assert torch.allclose(lp.grad, torch.tensor([[2.0, -3.3]]))


def test_ppo_dual_clip_caps_negative_advantage_loss() -> None:
    # c = 3. ρ=5, A=-1: -min(-5, -1.2) = 5 > 3 = -c·A → 3 (dual). ρ=2, A=-1: 2 < 3 → 2.
    # ρ=5, A=+1: -1.2 (ordinary clip; dual never touches A > 0).
    lp = torch.tensor([[math.log(5.0), math.log(2.0), math.log(5.0)]], requires_grad=True)
    loss, stats = ppo_clip_token_loss(lp, torch.zeros(1, 3), torch.tensor([[-1.0, -1.0, 1.0]]), torch.ones(1, 3),
                                      eps_low=0.2, eps_high=0.2, dual_clip=3.0)
    assert torch.allclose(loss, torch.tensor([[3.0, 2.0, -1.2]]))
    assert stats["dual_clipped"].tolist() == [[1.0, 0.0, 0.0]]
    assert stats["clipped"].tolist() == [[0.0, 0.0, 1.0]]
    loss.sum().backward()
    assert torch.allclose(lp.grad, torch.tensor([[0.0, 2.0, 0.0]]))  # both caps stop the gradient
    no_dual, _ = _ppo([[math.log(5.0)]], [[0.0]], [-1.0], [[1.0]])
    assert no_dual.item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        _ppo([[0.0]], [[0.0]], [1.0], [[1.0]], dual_clip=1.0)


def test_gspo_token_loss_hand_values() -> None:
    # seq 1: mean log-ratio (0.2 + 0.4)/2 = 0.3 → s = e^0.3 = 1.3499 > 1.2 with A=+1 → -1.2 on each token, clipped.
    # seq 2: mean (-0.1 + 0.1 - 0.3)/3 = -0.1 → s = e^-0.1 = 0.9048, A=-1 → 0.9048 per token, unclipped.
    lp = torch.tensor([[0.2, 0.4, math.nan], [-0.1, 0.1, -0.3]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = gspo_token_loss(lp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), mask, eps_low=0.2, eps_high=0.2)
    s2 = E(-0.1)
    assert torch.allclose(loss, torch.tensor([[-1.2, -1.2, 0.0], [s2, s2, s2]]))
    assert torch.allclose(stats["ratio"], torch.tensor([[E(0.3), E(0.3), 0.0], [s2, s2, s2]]))
    assert stats["clipped"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    # seq-mean-token-mean over 2 sequences: d/dlogπ_t = -A·s / |o_i| / 2 = s2/6 on seq 2, 0 on the clipped seq 1
    aggregate(loss, mask, "seq-mean-token-mean", num_tokens=5, num_sequences=2, max_len=3).backward()
    assert torch.allclose(lp.grad, torch.tensor([[0.0, 0.0, 0.0], [s2 / 6] * 3]))


def test_gspo_token_gradient_equals_sequence_level_gspo() -> None:
    # GSPO's own objective: mean_i -min(s_i A_i, clip(s_i) A_i), s_i = exp(mean_t(logπ - logπ_old)) differentiable.
    torch.manual_seed(1)
    old = torch.randn(6, 5) * 0.3 - 1.0
    mask = (torch.arange(5) < torch.tensor([5, 2, 4, 1, 3, 5])[:, None]).float()
    lp = (old + torch.randn(6, 5) * 0.15).requires_grad_()
    adv, eps = torch.randn(6), 0.05
    token_loss, stats = gspo_token_loss(lp, old, adv, mask, eps_low=eps, eps_high=eps)
    ours = aggregate(token_loss, mask, "seq-mean-token-mean", num_tokens=int(mask.sum()), num_sequences=6, max_len=5)
    (g_ours,) = torch.autograd.grad(ours, lp)
    s = torch.exp(((lp - old) * mask).sum(1) / mask.sum(1))
    ref = (-torch.minimum(s * adv, s.clamp(1 - eps, 1 + eps) * adv)).mean()
    (g_ref,) = torch.autograd.grad(ref, lp)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)
    assert 0 < stats["clipped"].sum() < mask.sum()  # both branches exercised


# ---------------------------------------------------------------- aggregation

def test_aggregation_hand_values() -> None:
    # real tokens: seq 1 → 1, 2; seq 2 → 4; seq 3 none (all padding, garbage values)
    loss = torch.tensor([[1.0, 2.0, 100.0], [4.0, math.nan, 100.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])

    def agg(mode: str, **kw) -> float:
        return aggregate(loss, mask, mode, **{"num_tokens": 3, "num_sequences": 3, "max_len": 4, **kw}).item()

    assert agg("token-mean") == pytest.approx(7 / 3)
    assert agg("token-mean", num_tokens=14) == pytest.approx(0.5)  # global count, not this micro-batch's
    assert agg("seq-mean-token-mean") == pytest.approx((1.5 + 4.0 + 0.0) / 3)
    assert agg("seq-mean-token-sum-norm") == pytest.approx(7 / (3 * 4))
    with pytest.raises(ValueError, match="token-mean"):
        agg("seq-sum")


def _ragged_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 1, 3, 0, 5, 2, 4, 6])
    mask = (torch.arange(6) < lengths[:, None]).float()
    old = torch.randn(8, 6, generator=g) * 0.5 - 1.0
    lp = old + torch.randn(8, 6, generator=g) * 0.3
    lp[0] = old[0] + 1.0  # ratio e on every token of seq 0, with a negative advantage: dual-clipped
    adv = torch.randn(8, generator=g)
    adv[0] = -1.0
    old = torch.where(mask.bool(), old, torch.full_like(old, -math.inf))  # padding garbage: lp - old = +inf
    return lp, old, adv, mask


@pytest.mark.parametrize("loss_name", ["ppo_clip", "gspo"])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_micro_batches_sum_to_the_full_batch(loss_name: str, mode: str) -> None:
    lp0, old, adv, mask = _ragged_batch()
    counts = {"num_tokens": int(mask.sum()), "num_sequences": 8, "max_len": 6}
    eps = {"ppo_clip": 0.2, "gspo": 0.05}[loss_name]  # GSPO's sequence ratios sit much closer to 1
    kw = {"eps_low": eps, "eps_high": eps + 0.08, "dual_clip": 1.5}
    loss_fn = TOKEN_LOSSES[loss_name]

    lp = lp0.clone().requires_grad_()
    token_loss, stats = loss_fn(lp, old, adv, mask, **kw)
    full = aggregate(token_loss, mask, mode, **counts)
    full.backward()
    full_grad = lp.grad.clone()

    lp = lp0.clone().requires_grad_()
    total = torch.zeros(())
    for i in range(0, 8, 2):
        part, _ = loss_fn(lp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], **kw)
        micro = aggregate(part, mask[i:i + 2], mode, **counts)
        micro.backward()
        total += micro.detach()
    torch.testing.assert_close(total, full.detach())
    torch.testing.assert_close(lp.grad, full_grad)
    assert torch.isfinite(full) and torch.isfinite(full_grad).all()
    assert (full_grad[mask == 0] == 0).all() and (full_grad[mask == 1] != 0).any()
    assert stats["clipped"].sum() > 0 and stats["dual_clipped"].sum() > 0  # the batch exercises both clips


# ---------------------------------------------------------------- rollout/trainer mismatch

def test_mismatch_weights_hand_values() -> None:
    # x = trainer - sampler. Row 1: ratios 1, 3, 1/3, 1.5, padding (trainer = inf).
    # Row 2: ratios 3, 3, then padding. c = 2.
    ln3, ln15 = math.log(3.0), math.log(1.5)
    trainer = torch.tensor([[0.0, ln3, -ln3, ln15, math.inf], [ln3, ln3, math.nan, 0.0, 0.0]], requires_grad=True)
    sampler = torch.zeros(2, 5)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    w = {m: mismatch_weights(trainer, sampler, mask, m, 2.0) for m in CORRECTIONS}
    assert torch.allclose(w["tis"], torch.tensor([[1.0, 2.0, 1 / 3, 1.5, 0.0], [2.0, 2.0, 0.0, 0.0, 0.0]]))
    assert w["mis_token"].tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0] * 5]
    # geometric means: row 1 exp(ln1.5 / 4) = 1.107 ∈ [0.5, 2]; row 2 exp(ln3) = 3 > 2
    assert w["mis_seq"].tolist() == [[1.0, 1.0, 1.0, 1.0, 0.0], [0.0] * 5]
    assert not any(t.requires_grad for t in w.values())
    # k3 = e^x - x - 1 per real token: 0, 2 - ln3, 1/3 + ln3 - 1, 0.5 - ln1.5, 2 - ln3, 2 - ln3 → mean of 6
    expected = (3 * (2 - ln3) + (1 / 3 + ln3 - 1) + (0.5 - ln15)) / 6
    kl = mismatch_kl(trainer, sampler, mask)
    assert kl.item() == pytest.approx(expected, abs=1e-6) and not kl.requires_grad
    with pytest.raises(ValueError, match="mis_token"):
        mismatch_weights(trainer, sampler, mask, "is", 2.0)
    with pytest.raises(ValueError, match=">= 1"):
        mismatch_weights(trainer, sampler, mask, "tis", 0.5)


# ---------------------------------------------------------------- entropy

def test_token_entropy_grad_hand_values() -> None:
    # p = (1/4, 3/4): H = -(¼ ln¼ + ¾ ln¾) = 0.562335; ∂H/∂z_k = -p_k (ln p_k + H) = ±0.205990
    z = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]], requires_grad=True)
    h = token_entropy(z, chunk_size=1)
    assert torch.allclose(h, torch.tensor([0.562335, math.log(2.0)]), atol=1e-6)
    h.sum().backward()
    assert torch.allclose(z.grad, torch.tensor([[0.205990, -0.205990], [0.0, 0.0]]), atol=1e-6)


def test_entropy_controller_rules() -> None:
    ctrl = EntropyController("adaptive", coef=0.01, target=0.2, target_end=1.0, delta=0.005, total_steps=100,
                             coef_max=0.012)
    assert [ctrl.target_at(s) for s in (0, 25, 100, 150)] == pytest.approx([0.2, 0.4, 1.0, 1.0])
    assert ctrl.coef_for_loss(0.4, step=25) == 0.01  # H ≤ H*: bonus applied
    assert ctrl.coef_for_loss(0.41, step=25) == 0.0  # H > H*: none
    ctrl.update(0.3, step=25)  # H < H* → +Δ, clamped at coef_max
    assert ctrl.coef == pytest.approx(0.012)
    ctrl.update(0.5, step=25)
    ctrl.update(0.5, step=25)
    ctrl.update(0.5, step=25)  # -3Δ, clamped at 0
    assert ctrl.coef == 0.0
    ctrl.update(0.0, step=0)
    state = ctrl.state_dict()
    fresh = EntropyController("adaptive", coef=0.0, target=0.2, target_end=None, delta=0.005, total_steps=100)
    fresh.load_state_dict(state)
    assert fresh.coef == pytest.approx(0.005) and fresh.target_at(77) == 0.2
    fixed = EntropyController("fixed", coef=0.03, target=0.0, target_end=None, delta=0.1, total_steps=1)
    fixed.update(0.0, step=1)
    assert fixed.coef_for_loss(5.0, step=1) == 0.03
    assert EntropyController("none", 0.5, 1.0, None, 0.0, 1).coef_for_loss(0.0, step=1) == 0.0
    with pytest.raises(ValueError, match="adaptive"):
        EntropyController("auto", 0.0, 0.2, None, 0.005, 10)
    assert EntropyController("adaptive", 0.02, 0.5, None, 0.01, 10).coef_for_loss(None, step=1) == 0.02


def test_proportional_entropy_control_rule() -> None:
    ctrl = EntropyController("proportional", coef=0.0, target=0.5, target_end=1.0, delta=0.005, total_steps=100,
                             coef_max=0.4)
    assert ctrl.coef_for_loss(None, step=1) == 0.0  # nothing measured yet: no bonus
    assert ctrl.coef_for_loss(0.5, step=0) == 0.0  # at the target: none
    assert ctrl.coef_for_loss(0.25, step=0) == pytest.approx(0.2)  # half the target: half of coef_max
    assert ctrl.coef_for_loss(0.0, step=0) == pytest.approx(0.4)
    assert ctrl.coef_for_loss(2.0, step=0) == 0.0  # above the target: none (never negative)
    assert ctrl.coef_for_loss(0.375, step=50) == pytest.approx(0.2)  # the target follows its schedule (0.75)
    ctrl.update(0.1, step=1)  # stateless
    assert ctrl.coef_for_loss(0.25, step=0) == pytest.approx(0.2) and ctrl.state_dict() == {"coef": 0.0}
    with pytest.raises(ValueError, match="target > 0"):
        EntropyConfig(mode="proportional", target=0.0)


def _toy_entropies(ctrl: EntropyController, steps: int = 200) -> list[float]:
    """GRPO on a 16-armed bandit (a learnable logit vector): 256 samples per step, reward 1 for arm 3, 0.5 for
    arm 7, advantages r - mean, SGD(lr=1) on -mean(A·logπ(a)) - α·H. Returns H before each step."""
    g = torch.Generator().manual_seed(0)
    theta = torch.zeros(16, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=1.0)
    reward = torch.zeros(16)
    reward[3], reward[7] = 1.0, 0.5
    entropies = []
    for step in range(1, steps + 1):
        logp = torch.log_softmax(theta, dim=0)
        actions = torch.multinomial(logp.exp().detach(), 256, replacement=True, generator=g)
        r = reward[actions]
        entropy = token_entropy(theta)
        h = entropy.item()
        loss = -((r - r.mean()) * logp[actions]).mean() - ctrl.coef_for_loss(h, step) * entropy
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctrl.update(h, step)
        entropies.append(h)
    return entropies


def test_entropy_collapses_without_control_and_adaptive_holds_the_target() -> None:
    none = _toy_entropies(EntropyController("none", 0.0, 0.0, None, 0.0, 200))
    fixed = _toy_entropies(EntropyController("fixed", 0.01, 0.0, None, 0.0, 200))
    assert none[0] == pytest.approx(math.log(16))
    assert max(none[-20:]) < 0.12 and max(fixed[-20:]) < 0.12  # collapse towards 0
    held = _toy_entropies(EntropyController("adaptive", 0.0, 0.6, None, 0.01, 200))
    last_half = held[100:]
    assert all(abs(h - 0.6) < 0.25 for h in last_half)
    assert sum(last_half) / len(last_half) == pytest.approx(0.6, abs=0.05)


def test_proportional_control_holds_a_steady_level_below_its_target() -> None:
    """No bang-bang: the held level moves 4x less from step to step than under the adaptive rule, and sits below
    the target where the bonus balances the policy gradient (here ~0.5 for a target of 0.6 at coef_max 1)."""
    held = _toy_entropies(EntropyController("proportional", 0.0, 0.6, None, 0.0, 200, coef_max=1.0))[100:]
    adaptive = _toy_entropies(EntropyController("adaptive", 0.0, 0.6, None, 0.01, 200))[100:]
    assert all(0.4 < h < 0.6 for h in held)

    def biggest_move(hs: list[float]) -> float:
        return max(abs(b - a) for a, b in zip(hs, hs[1:]))

    assert biggest_move(held) < biggest_move(adaptive) / 3


def test_entropy_follows_a_rising_target() -> None:
    ctrl = EntropyController("adaptive", 0.0, 0.3, 1.5, 0.01, 200)
    entropies = _toy_entropies(ctrl)
    assert all(abs(entropies[s - 1] - ctrl.target_at(s)) < 0.25 for s in range(101, 201))
    assert sum(entropies[-10:]) / 10 > sum(entropies[95:105]) / 10 + 0.4


# ---------------------------------------------------------------- Clip-Cov / KL-Cov

# real tokens: logπ = -1, -2 (seq 1), -3 (seq 2); A = 2, 2, -1 → means -2 and 1
# c = (1)(1) = 1, (0)(1) = 0, (-1)(-2) = 2
COV_LP = torch.tensor([[-1.0, -2.0, 99.0], [-3.0, math.nan, 99.0]])
COV_ADV = torch.tensor([2.0, -1.0])
COV_MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_token_covariance_hand_values() -> None:
    cov = token_covariance(COV_LP, COV_ADV, COV_MASK)
    assert torch.allclose(cov, torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))
    per_token = token_covariance(COV_LP, torch.tensor([[2.0, 2.0, 5.0], [-1.0, 7.0, 7.0]]), COV_MASK)
    assert torch.equal(per_token, cov)  # padding advantages ignored


def test_clip_cov_mask_selection() -> None:
    def sel(**kw) -> list[list[bool]]:
        return clip_cov_mask(COV_LP, COV_ADV, COV_MASK, generator=torch.Generator().manual_seed(0), **kw).tolist()

    # band [0.5, 1.5] holds only c = 1; k = max(int(2e-4 · 3), 1) = 1
    assert sel(cov_low=0.5, cov_high=1.5) == [[True, False, False], [False, False, False]]
    # band [1, 5] (inclusive) holds c = 1 and 2; clip_ratio 1 → k = 3, capped at the 2 candidates
    assert sel(clip_ratio=1.0) == [[True, False, False], [True, False, False]]
    assert sel(clip_ratio=1.0, exclude=torch.tensor([[0, 0, 0], [1, 0, 0]])) == [[True, False, False], [False] * 3]
    assert sel(cov_low=3.0) == [[False] * 3, [False] * 3]
    picks = {tuple(map(tuple, sel_)) for sel_ in (clip_cov_mask(COV_LP, COV_ADV, COV_MASK,
             generator=torch.Generator().manual_seed(s)).tolist() for s in range(20))}
    assert len(picks) == 2  # k = 1 of 2 candidates, chosen at random: both occur over seeds


def test_clip_cov_mask_count_on_a_larger_batch() -> None:
    g = torch.Generator().manual_seed(3)
    lp, adv = torch.randn(8, 50, generator=g) * 2, torch.randn(8, generator=g) * 2
    mask = (torch.arange(50) < torch.randint(10, 51, (8,), generator=g)[:, None]).float()
    cov = token_covariance(lp, adv, mask)
    chosen = clip_cov_mask(lp, adv, mask, clip_ratio=0.02, generator=g)
    assert chosen.sum() == int(0.02 * mask.sum())  # fewer than the candidates here
    assert ((cov[chosen] >= 1.0) & (cov[chosen] <= 5.0)).all() and (mask[chosen] == 1).all()


def test_detach_where() -> None:
    lp = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = detach_where(lp, torch.tensor([[True, False]]))
    assert torch.equal(out, lp.detach())
    out.sum().backward()
    assert lp.grad.tolist() == [[0.0, 1.0]]


def test_kl_cov_penalty_hand_values() -> None:
    lp = COV_LP.clone().requires_grad_()
    old = torch.zeros(2, 3)
    # top_frac 2e-3 → k = 1: the largest c is token (1, 0) (c = 2): 0.5·|-3 - 0| = 1.5
    pen = kl_cov_penalty(lp, old, COV_ADV, COV_MASK, coef=0.5)
    assert torch.allclose(pen, torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]))
    pen.sum().backward()
    assert lp.grad.tolist() == [[0.0, 0.0, 0.0], [-0.5, 0.0, 0.0]]  # coef·sign(logπ - logπ_old)
    # top_frac 0.67 → k = int(0.67 · 3) = 2: tokens with c = 2 and c = 1
    pen2 = kl_cov_penalty(COV_LP, old, COV_ADV, COV_MASK, top_frac=0.67, coef=0.5)
    assert torch.allclose(pen2, torch.tensor([[0.5, 0.0, 0.0], [1.5, 0.0, 0.0]]))
    assert torch.equal(kl_cov_penalty(COV_LP, old, COV_ADV, torch.zeros(2, 3)), torch.zeros(2, 3))
