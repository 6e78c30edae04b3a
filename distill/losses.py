"""Distillation losses: pure functions over tensors (no models, engines or Ray).

Notation: at each completion position t of a student-sampled sequence, S = π_student(· | x_<t) and
T = π_teacher(· | x_<t), both at the sampling temperature; `loss_mask` [N, T] is 1 on sampled tokens.
- `sampled_kl_advantages`: the Thinking Machines / Qwen3 on-policy recipe — the per-token reverse KL of the
  *sampled* token, log S(x_t) − log T(x_t), negated and used as a per-token advantage in the policy-gradient
  loss (its expectation under S is KL(S‖T), so the policy gradient minimises the reverse KL; one number per token).
- `kl_divergence`: KL(S‖T) summed over the vocabulary at every sampled position (reverse KL: mode-seeking).
- `generalized_jsd`: GKD's JSD_β (arXiv 2306.13649), TRL's convention: M = β·T + (1−β)·S,
  JSD_β = β·KL(T‖M) + (1−β)·KL(S‖M); β = 0 is taken as forward KL(T‖S), β = 1 as reverse KL(S‖T).
- `topk_buckets`: the teacher's top-k tokens + one tail bucket holding the rest of the mass, for both
  distributions, so the two functions above can run on [N, T, K+1] instead of [N, T, V] (what crosses from the
  teacher is K+1 numbers per token, not V). A KL on the merged buckets is a lower bound of the full one
  (merging outcomes never increases a divergence), and equals it when the student matches the teacher.
- `masked_token_mean`: the global token-mean every loss uses: Σ(per-token · mask) / num_tokens_in_global_batch,
  so micro-batch losses sum to the full batch's loss.
All distributions are passed as log-probabilities (last dimension = outcomes).

Formulas: docs/ALGORITHMS.md#on-policy-distillation.
"""

from __future__ import annotations

import math

import torch


def sampled_kl_advantages(
    old_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, loss_mask: torch.Tensor, *, kl_coef: float = 1.0
) -> torch.Tensor:
    """A_t = −kl_coef · (log S(x_t) − log T(x_t)) on sampled tokens, 0 where `loss_mask` is 0.

    old_logprobs: [N, T] the sampler's log-probability of each sampled token (π_old); teacher_logprobs: [N, T]
    the teacher's log-probability of the same token; loss_mask: [N, T]. Returns [N, T] float32.
    """
    mask = loss_mask.float()
    return -kl_coef * (old_logprobs.float() - teacher_logprobs.float()) * mask


def kl_divergence(p_logprobs: torch.Tensor, q_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(P‖Q) = Σ_v P_v (log P_v − log Q_v) over the last dimension; [..., V] → [...].

    Outcomes with P_v = 0 contribute 0 (also when log Q_v = −inf); float32 throughout."""
    p_lp, q_lp = p_logprobs.float(), q_logprobs.float()
    terms = torch.exp(p_lp) * (p_lp - q_lp)
    return torch.where(p_lp == -math.inf, torch.zeros_like(terms), terms).sum(-1)


def generalized_jsd(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, beta: float) -> torch.Tensor:
    """GKD's generalized Jensen-Shannon divergence per position; [..., V] → [...].

    M = β·T + (1−β)·S (in log space: logsumexp(log T + log β, log S + log(1−β))),
    JSD_β = β·KL(T‖M) + (1−β)·KL(S‖M). β = 0 returns forward KL(T‖S) and β = 1 reverse KL(S‖T) (the limits
    the GKD paper interpolates between; the formula itself vanishes there)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"generalized_jsd: beta={beta} must lie in [0, 1]")
    if beta == 0.0:
        return kl_divergence(teacher_logprobs, student_logprobs)
    if beta == 1.0:
        return kl_divergence(student_logprobs, teacher_logprobs)
    s, t = student_logprobs.float(), teacher_logprobs.float()
    mixture = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1.0 - beta)]), dim=0)
    return beta * kl_divergence(t, mixture) + (1.0 - beta) * kl_divergence(s, mixture)


def topk_buckets(
    student_logprobs: torch.Tensor,
    teacher_topk_ids: torch.Tensor,
    teacher_topk_logprobs: torch.Tensor,
    teacher_tail_logprob: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions on the teacher's top-k tokens plus one tail bucket (everything else).

    student_logprobs: [N, T, V] (differentiable); teacher_topk_ids: [N, T, K] int64 (distinct per position);
    teacher_topk_logprobs: [N, T, K]; teacher_tail_logprob: [N, T] = log of the teacher's mass outside its
    top-k (computed from its full logits, so no 1 − Σ cancellation). Returns (student, teacher) bucket
    log-probabilities, each [N, T, K+1], the tail last.
    """
    s = student_logprobs.float()
    s_top = s.gather(-1, teacher_topk_ids)
    # log Σ_{v ∉ top-k} S_v, computed as a logsumexp with the top-k entries removed (exact, no subtraction)
    s_tail = torch.logsumexp(s.scatter(-1, teacher_topk_ids, -math.inf), dim=-1)
    student = torch.cat([s_top, s_tail.unsqueeze(-1)], dim=-1)
    teacher = torch.cat([teacher_topk_logprobs.float(), teacher_tail_logprob.float().unsqueeze(-1)], dim=-1)
    return student, teacher


def masked_token_mean(per_token: torch.Tensor, loss_mask: torch.Tensor, num_tokens_in_global_batch: int) -> torch.Tensor:
    """Σ_(n,t) per_token · mask / num_tokens_in_global_batch (a micro-batch's share of the global token-mean).

    per_token, loss_mask: [N, T]. Padding positions may hold any finite value; they are zeroed by the mask."""
    mask = loss_mask.float()
    return (torch.where(mask > 0, per_token, torch.zeros_like(per_token)) * mask).sum() / num_tokens_in_global_batch


def reverse_kl(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(S‖T) per position (the `full_kl` loss); [..., V] → [...]."""
    return kl_divergence(student_logprobs, teacher_logprobs)


# `loss.type` → divergence(student_logprobs, teacher_logprobs, **params) over the last dimension. `sampled_kl`
# is not here: it is an advantage (`sampled_kl_advantages`) that the policy-gradient loss consumes.
DIVERGENCES = {"full_kl": reverse_kl, "gkd": generalized_jsd}
