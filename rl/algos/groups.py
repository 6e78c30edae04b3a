"""Group views of per-completion rewards, and DAPO's dynamic-sampling filter.

Completions of the same prompt are contiguous: rewards [B*G] is B groups of G.

Formulas: docs/ALGORITHMS.md#dynamic-sampling.
"""

from __future__ import annotations

import torch


def grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards: [B*G] → view [B, G] (same dtype); ValueError when the shape is not whole groups."""
    if rewards.ndim != 1 or group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    return rewards.view(-1, group_size)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Which groups carry a learning signal (DAPO dynamic sampling keeps only these).

    rewards: [B*G] → bool [B]; False when max - min of the group's rewards is ≤ 1e-9 (all correct, all wrong,
    or any other constant reward: every group-relative advantage would be 0). Compared in float64, so a
    float64 input keeps differences below float32 resolution.
    """
    groups = grouped(rewards.double(), group_size)
    return (groups.amax(dim=1) - groups.amin(dim=1)) > 1e-9
