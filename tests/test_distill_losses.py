"""Distillation losses against hand-worked values (distill/losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from distill.losses import (
    DIVERGENCES,
    generalized_jsd,
    kl_divergence,
    masked_token_mean,
    reverse_kl,
    sampled_kl_advantages,
    topk_buckets,
)

S = torch.tensor([0.5, 0.5]).log()  # student
T = torch.tensor([0.25, 0.75]).log()  # teacher


def test_sampled_kl_advantages_hand_values() -> None:
    # A_t = -coef * (log S(x_t) - log T(x_t)): -0.5 * (-1.0 + 1.5) = -0.25, -0.5 * (-2.0 + 1.0) = +0.5, masked → 0
    adv = sampled_kl_advantages(torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[-1.5, -1.0, -3.0]]),
                                torch.tensor([[1, 1, 0]]), kl_coef=0.5)
    assert torch.allclose(adv, torch.tensor([[-0.25, 0.5, 0.0]]))


def test_kl_hand_values() -> None:
    # KL(S‖T) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.346574 - 0.202733 = 0.143841
    assert kl_divergence(S, T).item() == pytest.approx(0.143841, abs=1e-6)
    assert reverse_kl(S, T).item() == pytest.approx(0.143841, abs=1e-6)
    # KL(T‖S) = 0.25 ln(0.5) + 0.75 ln(1.5) = -0.173287 + 0.304099 = 0.130812
    assert kl_divergence(T, S).item() == pytest.approx(0.130812, abs=1e-6)
    # P = [1, 0]: the zero-probability outcome adds 0 (not nan), even against log Q = -inf → ln 2
    p = torch.tensor([0.0, -math.inf])
    assert kl_divergence(p, torch.tensor([0.5, 0.5]).log()).item() == pytest.approx(math.log(2))
    assert kl_divergence(p, torch.tensor([1.0, 0.0]).log()).item() == 0.0
    assert kl_divergence(S, S).item() == 0.0


def test_generalized_jsd_hand_values() -> None:
    # β = 0.5: M = [0.375, 0.625]; KL(T‖M) = 0.25 ln(0.25/0.375) + 0.75 ln(0.75/0.625) = 0.035375,
    # KL(S‖M) = 0.5 ln(0.5/0.375) + 0.5 ln(0.5/0.625) = 0.032269 → JSD = 0.5 (0.035375 + 0.032269) = 0.033822
    assert generalized_jsd(S, T, 0.5).item() == pytest.approx(0.033822, abs=1e-6)
    # β = 0.9: M = 0.9 T + 0.1 S = [0.275, 0.725]; KL(T‖M) = 0.0015987, KL(S‖M) = 0.113137
    # → 0.9 · 0.0015987 + 0.1 · 0.113137 = 0.0127525
    assert generalized_jsd(S, T, 0.9).item() == pytest.approx(0.0127525, abs=1e-6)
    # the endpoints: forward KL(T‖S) at β = 0, reverse KL(S‖T) at β = 1 (TRL's convention)
    assert generalized_jsd(S, T, 0.0).item() == pytest.approx(0.130812, abs=1e-6)
    assert generalized_jsd(S, T, 1.0).item() == pytest.approx(0.143841, abs=1e-6)
    assert generalized_jsd(S, S, 0.3).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="beta=1.5"):
        generalized_jsd(S, T, 1.5)


def _bucket_case() -> tuple[torch.Tensor, ...]:
    student = torch.tensor([0.1, 0.2, 0.3, 0.4]).log().view(1, 1, 4)
    ids = torch.tensor([3, 0]).view(1, 1, 2)  # the teacher's top-2: token 3 (0.5), token 0 (0.3); tail 0.2
    return student, ids, torch.tensor([0.5, 0.3]).log().view(1, 1, 2), torch.tensor(0.2).log().view(1, 1)


def test_topk_buckets_and_kl_hand_values() -> None:
    student, ids, top_lp, tail_lp = _bucket_case()
    s, t = topk_buckets(student, ids, top_lp, tail_lp)
    assert torch.allclose(s.exp(), torch.tensor([[[0.4, 0.1, 0.5]]]))  # S(3), S(0), S(1) + S(2)
    assert torch.allclose(t.exp(), torch.tensor([[[0.5, 0.3, 0.2]]]))
    # KL over buckets = 0.4 ln(0.4/0.5) + 0.1 ln(0.1/0.3) + 0.5 ln(0.5/0.2) = -0.089257 - 0.109861 + 0.458145
    assert reverse_kl(s, t).item() == pytest.approx(0.259027, abs=1e-6)
    # a lower bound of the full KL for any teacher with that top-2, e.g. T = [0.3, 0.1, 0.1, 0.5]: 0.269095
    full_teacher = torch.tensor([0.3, 0.1, 0.1, 0.5]).log().view(1, 1, 4)
    assert reverse_kl(student, full_teacher).item() == pytest.approx(0.269095, abs=1e-6)


def test_topk_bucket_kl_is_differentiable_and_zero_at_the_teacher() -> None:
    student, ids, top_lp, tail_lp = _bucket_case()
    logits = student.clone().requires_grad_(True)
    s, t = topk_buckets(torch.log_softmax(logits, -1), ids, top_lp, tail_lp)
    reverse_kl(s, t).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # a student equal to the teacher on the buckets: zero loss and zero gradient
    match = torch.tensor([0.3, 0.1, 0.1, 0.5]).log().view(1, 1, 4).requires_grad_(True)
    s, t = topk_buckets(torch.log_softmax(match, -1), ids, top_lp, tail_lp)
    kl = reverse_kl(s, t).sum()
    kl.backward()
    assert kl.item() == pytest.approx(0.0, abs=1e-6) and match.grad.abs().max() < 1e-6


def test_masked_token_mean_uses_the_global_count_and_ignores_padding() -> None:
    per_token = torch.tensor([[1.0, 2.0, math.nan], [3.0, math.inf, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_token_mean(per_token, mask, num_tokens_in_global_batch=4).item() == pytest.approx(1.5)
    # two micro-batches sum to the whole batch's mean
    halves = sum(masked_token_mean(per_token[i : i + 1], mask[i : i + 1], 4) for i in range(2))
    assert halves.item() == pytest.approx(1.5)


def test_registry_matches_loss_types() -> None:
    assert DIVERGENCES["full_kl"](S, T).item() == pytest.approx(0.143841, abs=1e-6)
    assert DIVERGENCES["gkd"](S, T, beta=0.5).item() == pytest.approx(0.033822, abs=1e-6)
