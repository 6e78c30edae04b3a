"""PPO-clip token loss with asymmetric clipping (clip-higher, DAPO) and optional dual-clip (Ye et al. 2020).

L_t = -min(ρ_t A, clip(ρ_t, 1 - eps_low, 1 + eps_high) A),  ρ_t = exp(logprobs - old_logprobs).
Dual-clip with c > 1: for A < 0 the loss is capped at -c·A, L_t = min(-min(ρ_t A, clip(ρ_t) A), -c·A), so a
huge ratio on a negative-advantage token cannot blow the loss (and its gradient) up.

`ppo_clip_token_loss` returns the per-token loss; `rl.algos.aggregation` turns it into a scalar.

Formulas: docs/ALGORITHMS.md#ppo-clip-token-loss.
"""

from __future__ import annotations

import torch


def masked_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logprobs - old_logprobs with padding positions set to 0 (they may hold ±inf/nan garbage). [N, T]."""
    return torch.where(mask.bool(), logprobs - old_logprobs, torch.zeros_like(logprobs))


def clipped_surrogate(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped objective shared by PPO-clip and GSPO, given the ratio that each one defines.

    ratio, mask: [N, T]; advantages: [N] or [N, T]. Returns (token_loss [N, T], stats), both 0 at masked
    positions. stats: detached float [N, T] "ratio", "clipped" (the clipped term was the min),
    "dual_clipped" (the -c·A cap was active).
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
    if advantages.ndim == 1:
        advantages = advantages.unsqueeze(1)
    valid = mask.bool()
    advantages = torch.where(valid, advantages.expand_as(ratio), torch.zeros_like(ratio))  # per-token padding may be nan
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    token_loss = -torch.minimum(unclipped, clipped)
    dual_active = torch.zeros_like(valid)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        dual_active = (advantages < 0) & (cap < token_loss)
        token_loss = torch.where(dual_active, cap, token_loss)
    zero = torch.zeros_like(token_loss)
    token_loss = torch.where(valid, token_loss, zero)
    with torch.no_grad():
        stats = {
            "ratio": torch.where(valid, ratio, zero).detach(),
            "clipped": ((clipped < unclipped) & valid).float(),
            "dual_clipped": (dual_active & valid).float(),
        }
    return token_loss, stats


def ppo_clip_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token PPO-clip loss, not aggregated.

    logprobs, old_logprobs, mask: [N, T] (completion tokens, right-padded; mask 1 on real tokens).
    advantages: [N] (one per sequence) or [N, T] (per token). dual_clip: c > 1 or None.
    Returns (token_loss [N, T], stats) with stats detached float [N, T] "ratio", "clipped", "dual_clipped";
    everything is 0 (and finite) at masked positions, whatever garbage they hold.
    """
    ratio = torch.exp(masked_log_ratio(logprobs, old_logprobs, mask))
    return clipped_surrogate(ratio, advantages, mask, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
