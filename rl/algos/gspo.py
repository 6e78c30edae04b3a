"""GSPO (Qwen, arXiv 2507.18071) in its GSPO-token form.

Sequence ratio s_i = exp(mean_t(logπ_θ - logπ_old)) over the masked tokens of o_i. GSPO-token gives every token
s_i,t = sg[s_i] · π_θ(y_t) / sg[π_θ(y_t)]: its value is s_i and ∂s_i,t/∂logπ_t = s_i, so with the
`seq-mean-token-mean` aggregation (1/|o_i| Σ_t) the gradient is exactly sequence-level GSPO's
A_i ∇s_i = A_i s_i (1/|o_i|) Σ_t ∇logπ_t, while per-token advantages remain possible.
Clipping acts on s_i (ε ≈ 3e-4 / 4e-4): a clipped sequence passes no gradient through any of its tokens.

Formulas: docs/ALGORITHMS.md#gspo.
"""

from __future__ import annotations

import torch

from rl.algos.ppo_clip import clipped_surrogate, masked_log_ratio


def gspo_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token GSPO-token loss, not aggregated (use `seq-mean-token-mean` for the paper's objective).

    logprobs, old_logprobs, mask: [N, T]; advantages: [N] or [N, T]; dual_clip: c > 1 or None.
    Returns (token_loss [N, T], stats) as `ppo_clip_token_loss`; stats["ratio"] holds s_i on every real token
    of sequence i. A sequence with no masked tokens gets s_i = 1 and loss 0.
    """
    valid = mask.bool()
    log_ratio = masked_log_ratio(logprobs, old_logprobs, mask)
    seq_log_ratio = log_ratio.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    own = torch.where(valid, logprobs, torch.zeros_like(logprobs))  # garbage-free logπ_t
    ratio = torch.exp(seq_log_ratio.detach().unsqueeze(1) + own - own.detach())
    return clipped_surrogate(ratio, advantages, mask, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
