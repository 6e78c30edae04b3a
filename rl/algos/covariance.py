"""Clip-Cov and KL-Cov (arXiv 2505.22617): control entropy through the tokens whose logπ–advantage covariance
drives its collapse.

Per-token covariance c_t = (logπ_t - mean logπ)(A_t - mean A), the means over this call's real tokens (so,
like verl, over the micro-batch the learner passes in), detached.
- Clip-Cov: detach the gradient of a small random subset of tokens with c_t ∈ [cov_low, cov_high].
- KL-Cov: add coef·|logπ_θ - logπ_old| to the loss of the top fraction of tokens by c_t.

Formulas: docs/ALGORITHMS.md#covariance-based-entropy-control.
"""

from __future__ import annotations

import torch


def _per_token(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (advantages.unsqueeze(1) if advantages.ndim == 1 else advantages).expand_as(like)


@torch.no_grad()
def token_covariance(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """c_t = (logπ_t - mean logπ)(A_t - mean A), means over real tokens. logprobs, mask: [N, T];
    advantages: [N] or [N, T] → detached [N, T], 0 at masked positions."""
    valid = mask.bool()
    zero = torch.zeros_like(logprobs, dtype=torch.float32)
    lp = torch.where(valid, logprobs.detach().float(), zero)
    adv = torch.where(valid, _per_token(advantages.detach().float(), lp), zero)
    n = valid.sum().clamp(min=1)
    cov = (lp - lp.sum() / n) * (adv - adv.sum() / n)
    return torch.where(valid, cov, zero)


@torch.no_grad()
def clip_cov_mask(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_ratio: float = 2e-4,
    cov_low: float = 1.0,
    cov_high: float = 5.0,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tokens whose gradient Clip-Cov detaches: bool [N, T].

    Following verl's `clip_cov`: k = max(int(clip_ratio · number of real tokens in this call), 1); the
    candidates are real tokens with cov_low ≤ c_t ≤ cov_high (bounds inclusive, as the paper states them)
    and not in `exclude` (verl excludes tokens PPO already clipped: pass stats["clipped"] for that); k of them
    (all if fewer) are drawn uniformly without replacement with `generator` (a CPU generator). No real tokens
    → nothing selected.
    """
    valid = mask.bool()
    selected = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    n_real = int(valid.sum())
    if n_real == 0:
        return selected
    cov = token_covariance(logprobs, advantages, mask)
    candidates = valid & (cov >= cov_low) & (cov <= cov_high)
    if exclude is not None:
        candidates &= ~exclude.bool()
    idx = candidates.flatten().nonzero().squeeze(1)
    k = min(max(int(clip_ratio * n_real), 1), idx.numel())
    chosen = idx[torch.randperm(idx.numel(), generator=generator)[:k].to(idx.device)]
    selected.view(-1)[chosen] = True
    return selected


def detach_where(logprobs: torch.Tensor, where_mask: torch.Tensor) -> torch.Tensor:
    """logprobs with the gradient stopped at `where_mask` (same values everywhere). [N, T] → [N, T]."""
    return torch.where(where_mask.bool(), logprobs.detach(), logprobs)


def kl_cov_penalty(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    top_frac: float = 2e-3,
    coef: float = 1.0,
) -> torch.Tensor:
    """KL-Cov extra per-token loss [N, T]: coef·|logπ_t - logπ_old,t| on the k = max(int(top_frac · real
    tokens), 1) real tokens with the largest c_t, 0 elsewhere. Differentiable through logprobs; add it to the
    token loss before aggregation."""
    valid = mask.bool()
    selected = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    n_real = int(valid.sum())
    if n_real > 0:
        cov = token_covariance(logprobs, advantages, mask)
        cov = torch.where(valid, cov, torch.full_like(cov, -torch.inf))
        k = max(int(top_frac * n_real), 1)
        selected.view(-1)[cov.flatten().topk(k).indices] = True
    diff = torch.where(selected, logprobs - old_logprobs, torch.zeros_like(logprobs))
    return coef * diff.abs()
