"""RLOO advantages: A_i = r_i - mean of the other G-1 rewards of the group (leave-one-out baseline).

Algebraically A_i = G/(G-1) · (r_i - mean_group r): Dr. GRPO's advantage scaled by G/(G-1).

Formula: docs/ALGORITHMS.md#advantages.
"""

from __future__ import annotations

import torch

from rl.algos.groups import grouped


def rloo_advantages(rewards: torch.Tensor, group_size: int, std_eps: float = 1e-6) -> torch.Tensor:
    """Leave-one-out advantages, one per completion.

    rewards: [B*G] float, groups contiguous → [B*G]. Needs group_size ≥ 2 (ValueError otherwise).
    `std_eps` is accepted for the common `ADVANTAGES` signature and unused.
    """
    if group_size < 2:
        raise ValueError(f"rloo needs group_size >= 2 (a leave-one-out baseline of G-1 others), got {group_size}")
    groups = grouped(rewards.float(), group_size)
    others_mean = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others_mean).view(-1)
