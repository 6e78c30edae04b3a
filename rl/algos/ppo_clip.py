"""PPO-clip token loss with asymmetric clipping (clip-higher, DAPO) and an explicit global token-mean.

L_t = -min(ρ_t A, clip(ρ_t, 1 - eps_low, 1 + eps_high) A),  ρ_t = exp(logprobs - old_logprobs).
"""

from __future__ import annotations

import torch


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    num_tokens_in_global_batch: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy loss of one micro-batch, normalised so micro-batch losses *sum* to the global token-mean.

    logprobs, old_logprobs, loss_mask: [N, T] (completion tokens, right-padded; mask 1 on real tokens).
    advantages: [N] (one per sequence) or [N, T] (per token).
    num_tokens_in_global_batch: completion tokens in the whole optimizer step (all micro-batches), so gradient
        accumulation over any split gives exactly the loss and gradient of the full batch.
    Returns (loss, metrics); metrics are detached contributions that also sum over micro-batches:
    `clip_frac` (tokens where the clipped term was chosen), `ratio_mean`, `policy_loss`.
    """
    if advantages.ndim == 1:
        advantages = advantages.unsqueeze(1)
    mask = loss_mask.to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs) * mask  # masked positions hold padding garbage: zero before exp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    token_loss = -torch.minimum(unclipped, clipped)
    loss = (token_loss * mask).sum() / num_tokens_in_global_batch
    with torch.no_grad():
        was_clipped = (clipped < unclipped).to(mask.dtype) * mask
        metrics = {
            "clip_frac": (was_clipped.sum() / num_tokens_in_global_batch).item(),
            "ratio_mean": ((ratio * mask).sum() / num_tokens_in_global_batch).item(),
            "policy_loss": loss.item(),
        }
    return loss, metrics
