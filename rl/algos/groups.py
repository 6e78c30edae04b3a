"""Group views of per-completion rewards, and DAPO's dynamic-sampling filter.

Completions of the same prompt are contiguous: rewards [B*G] is B groups of G.

Formulas: docs/ALGORITHMS.md#dynamic-sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards: [B*G] → view [B, G] (same dtype); ValueError when the shape is not whole groups."""
    if rewards.ndim != 1 or group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    return rewards.view(-1, group_size)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Which groups carry a learning signal (DAPO dynamic sampling keeps only these).

    rewards: [B*G], NaN where a completion is unscored (a grader failed) → bool [B]; False when max - min of the
    group's scored rewards is ≤ 1e-9 (all correct, all wrong, or any other constant reward: every group-relative
    advantage would be 0) or fewer than 2 are scored. Compared in float64, so a float64 input keeps differences
    below float32 resolution.
    """
    groups = grouped(rewards.double(), group_size)
    scored = ~torch.isnan(groups)
    high = torch.where(scored, groups, -torch.inf).amax(dim=1)
    low = torch.where(scored, groups, torch.inf).amin(dim=1)
    return (scored.sum(dim=1) >= 2) & ((high - low) > 1e-9)


def scored_advantages(estimator: Callable[[torch.Tensor, int, float], torch.Tensor], rewards: torch.Tensor,
                      group_size: int, std_eps: float) -> torch.Tensor:
    """Advantages when some completions are unscored: each group's `estimator` (an `ADVANTAGES` entry) over its
    scored members only, as a group of their number; the unscored ones and every member of a group with fewer
    than 2 scored get 0 (no baseline to compare with). A missing score never counts as a reward of 0.

    rewards: [B*G], NaN where unscored → [B*G] float32. Without NaN it is `estimator(rewards, G, std_eps)`.
    """
    groups = grouped(rewards.float(), group_size)
    scored = ~torch.isnan(groups)
    if bool(scored.all()):
        return estimator(rewards.float(), group_size, std_eps)
    out = torch.zeros_like(groups)
    for b in range(groups.shape[0]):
        count = int(scored[b].sum())
        if count >= 2:
            out[b, scored[b]] = estimator(groups[b, scored[b]], count, std_eps)
    return out.view(-1)


def group_reward_std(rewards: torch.Tensor, group_size: int) -> float | None:
    """Mean over groups of the standard deviation (n − 1) of each group's scored rewards — TRL's `reward_std`: the
    spread the group-relative advantages see, without the spread between prompts.

    rewards: [B*G], NaN where unscored → float, or None when no group has 2 scored rewards.
    """
    groups = grouped(rewards.double(), group_size)
    scored = ~torch.isnan(groups)
    count = scored.sum(dim=1)
    filled = torch.where(scored, groups, 0.0)
    mean = filled.sum(dim=1) / count.clamp(min=1)
    sq = torch.where(scored, (groups - mean[:, None]) ** 2, 0.0).sum(dim=1)
    kept = count >= 2
    if not bool(kept.any()):
        return None
    return (sq[kept] / (count[kept] - 1)).sqrt().mean().item()
