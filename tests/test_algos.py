"""GRPO maths against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from rl.algos import (
    ADVANTAGES,
    TOKEN_LOSSES,
    aggregate,
    grpo_advantages,
    kl_per_token,
    ppo_clip_token_loss,
    token_entropy,
    token_logprobs,
    token_logprobs_and_entropy,
)
from rl.config import AlgorithmConfig, LossConfig


def test_grpo_advantages_hand_values() -> None:
    # group 1: rewards 1, 0, 1, 0 → mean 0.5, unbiased std sqrt(1/3) → A = ±0.5 / 0.57735 = ±0.866025
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0, 3.0, 1.0, 2.0, 2.0]), group_size=4, std_eps=0.0)
    assert torch.allclose(adv[:4], torch.tensor([0.866025, -0.866025, 0.866025, -0.866025]), atol=1e-5)
    # group 2: 3, 1, 2, 2 → mean 2, std sqrt(2/3) = 0.816497 → 1.224745, -1.224745, 0, 0
    assert torch.allclose(adv[4:], torch.tensor([1.224745, -1.224745, 0.0, 0.0]), atol=1e-5)


def test_grpo_zero_variance_group_gives_exactly_zero() -> None:
    adv = grpo_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), group_size=3)
    assert torch.equal(adv, torch.zeros(6))


def test_grpo_equal_rewards_not_exact_in_binary_give_exactly_zero() -> None:
    # 8 x 0.7 in float32: the group mean rounds, leaving ~1e-8 in r - mean and in std, which (std + eps) used to
    # blow up to |A| ~ 0.056; a group beside it with a real spread keeps its advantages
    rewards = torch.tensor([0.7] * 8 + [0.1] * 8 + [0.7] * 7 + [0.8])
    adv = grpo_advantages(rewards, group_size=8)
    assert torch.equal(adv[:16], torch.zeros(16))
    assert adv[23] > 2.0 and torch.allclose(adv[16:23], adv[16].expand(7))


def test_grpo_rejects_ragged_groups() -> None:
    with pytest.raises(ValueError, match="group_size=4"):
        grpo_advantages(torch.zeros(6), group_size=4)


def ppo_clip_loss(logprobs, old, adv, mask, *, eps_low, eps_high, num_tokens_in_global_batch):
    """PPO-clip, token-mean over a global token count: the learner's default objective."""
    token_loss, stats = ppo_clip_token_loss(logprobs, old, adv, mask, eps_low=eps_low, eps_high=eps_high)
    loss = aggregate(token_loss, mask, "token-mean", num_tokens=num_tokens_in_global_batch,
                     num_sequences=logprobs.shape[0], max_len=logprobs.shape[1])
    return loss, {"clip_frac": (stats["clipped"].sum() / num_tokens_in_global_batch).item()}


def _loss(logprobs, old, adv, mask, n_tokens, eps_low=0.2, eps_high=0.2):
    return ppo_clip_loss(torch.tensor(logprobs), torch.tensor(old), torch.tensor(adv), torch.tensor(mask),
                         eps_low=eps_low, eps_high=eps_high, num_tokens_in_global_batch=n_tokens)


def test_ppo_clip_hand_values_clipped_and_masked() -> None:
    # ratios: e^0.5 = 1.6487 (A=+1 → clipped at 1.2), e^-0.5 = 0.6065 (A=+1 → unclipped 0.6065 is the min),
    # e^0 = 1 on a masked token (ignored). Sequence 2: ratio e^0.1 = 1.10517, A = -2 → min(-2.21034, -2.2) = -2.21034.
    loss, metrics = _loss([[0.5, -0.5, 0.0], [0.1, 9.0, 9.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                          [1.0, -2.0], [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], n_tokens=3)
    expected = (-(1.2 + math.exp(-0.5)) + 2 * math.exp(0.1)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert metrics["clip_frac"] == pytest.approx(1 / 3)  # only the first token was clipped


def test_ppo_clip_higher_is_asymmetric() -> None:
    # ratio 1.25 with A > 0: clipped at 1.2 with eps_high = 0.2, not clipped with eps_high = 0.28.
    lp = [[math.log(1.25)]]
    low, _ = _loss(lp, [[0.0]], [1.0], [[1.0]], 1)
    high, _ = _loss(lp, [[0.0]], [1.0], [[1.0]], 1, eps_high=0.28)
    assert low.item() == pytest.approx(-1.2) and high.item() == pytest.approx(-1.25)
    # negative advantage, ratio 0.7 < 1 - eps_low: max(-A·ratio) picks the clipped 0.8 → loss = 0.8 · 1
    neg, m = _loss([[math.log(0.7)]], [[0.0]], [-1.0], [[1.0]], 1)
    assert neg.item() == pytest.approx(0.8) and m["clip_frac"] == 1.0


def test_ppo_clip_gradient_is_zero_when_clipped() -> None:
    lp = torch.tensor([[0.5]], requires_grad=True)
    loss, _ = ppo_clip_loss(lp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1),
                            eps_low=0.2, eps_high=0.2, num_tokens_in_global_batch=1)
    loss.backward()
    assert lp.grad.item() == 0.0


def test_token_mean_is_global_so_micro_batches_sum_to_the_full_batch() -> None:
    torch.manual_seed(0)
    lp, old = torch.randn(8, 5) * 0.1, torch.randn(8, 5) * 0.1
    adv, mask = torch.randn(8), (torch.rand(8, 5) > 0.3).float()
    n = int(mask.sum())
    full, _ = ppo_clip_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28, num_tokens_in_global_batch=n)
    parts = sum(ppo_clip_loss(lp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], eps_low=0.2, eps_high=0.28,
                              num_tokens_in_global_batch=n)[0] for i in range(0, 8, 2))
    assert parts.item() == pytest.approx(full.item(), abs=1e-6)


def test_kl_estimators_hand_values() -> None:
    logprobs, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    x = ref - logprobs  # [-0.5, 1.0]
    assert torch.allclose(kl_per_token(logprobs, ref, "k1"), -x)
    assert torch.allclose(kl_per_token(logprobs, ref, "k2"), 0.5 * x**2)
    k3 = kl_per_token(logprobs, ref, "k3")
    assert torch.allclose(k3, torch.tensor([[math.exp(-0.5) + 0.5 - 1, math.e - 2]]))
    assert (k3 >= 0).all() and kl_per_token(logprobs, logprobs, "k3").abs().max() == 0


def test_entropy_and_logprobs_match_direct_formulas() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]]])
    h = token_entropy(logits, chunk_size=1)
    assert h[0, 0].item() == pytest.approx(math.log(4))
    p = torch.softmax(logits[0, 1], -1)
    assert h[0, 1].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)  # float32 cancellation
    lp = token_logprobs(logits, torch.tensor([[2, 0]]), chunk_size=1)
    assert torch.allclose(lp, torch.log_softmax(logits, -1)[0, [0, 1], [2, 0]][None], atol=1e-6)


def _direct_logprobs_and_entropy(z: torch.Tensor, tokens: torch.Tensor, temperature: float):
    """Autograd through the textbook formulas, float32: the reference for the fused, chunked function."""
    lsm = torch.log_softmax(z.float() / temperature, -1)
    return lsm.gather(-1, tokens[..., None]).squeeze(-1), -(lsm.exp() * lsm).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("uses", ["logprob", "entropy", "both"])
def test_fused_logprobs_and_entropy_match_autograd_of_the_formulas(temperature: float, uses: str) -> None:
    # 3 x 5 positions in chunks of 4 rows (the last chunk partial), a vocabulary of 37, random upstream gradients
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(3, 5, 37, generator=g)).requires_grad_(True)
    tokens = torch.randint(0, 37, (3, 5), generator=g)
    w_lp, w_h = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    grads = []
    for fn in (lambda: token_logprobs_and_entropy(z, tokens, temperature=temperature, chunk_size=4),
               lambda: _direct_logprobs_and_entropy(z, tokens, temperature)):
        lp, h = fn()
        loss = {"logprob": (lp * w_lp).sum(), "entropy": (h * w_h).sum(), "both": (lp * w_lp + h * w_h).sum()}[uses]
        (grad,) = torch.autograd.grad(loss, z)
        grads.append((lp.detach(), h.detach(), grad))
    (lp, h, grad), (lp_ref, h_ref, grad_ref) = grads
    assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(h, h_ref, atol=1e-5)
    assert torch.allclose(grad, grad_ref, atol=1e-6)
    assert torch.allclose(token_logprobs(z, tokens, temperature=temperature, chunk_size=2), lp_ref, atol=1e-5)


def test_fused_logprobs_take_bf16_logits_and_return_bf16_gradients() -> None:
    z = torch.randn(2, 3, 50, generator=torch.Generator().manual_seed(1)).bfloat16().requires_grad_(True)
    tokens = torch.tensor([[1, 2, 3], [4, 5, 49]])
    lp, h = token_logprobs_and_entropy(z, tokens)
    lp_ref, h_ref = _direct_logprobs_and_entropy(z.detach(), tokens, 1.0)  # the same bf16 values, in float32
    assert lp.dtype == h.dtype == torch.float32
    assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(h, h_ref, atol=1e-5)
    (lp.sum() + h.sum()).backward()
    assert z.grad.dtype == torch.bfloat16 and torch.isfinite(z.grad.float()).all()


def test_registries_cover_the_config_choices() -> None:
    from typing import get_args

    assert set(get_args(AlgorithmConfig.model_fields["advantage"].annotation)) == set(ADVANTAGES)
    assert set(get_args(LossConfig.model_fields["type"].annotation)) == set(TOKEN_LOSSES)
