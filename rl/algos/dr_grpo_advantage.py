"""Dr. GRPO advantages (arXiv 2503.20783): A_i = r_i - mean_group r, no std division (no difficulty bias).

Formula: docs/ALGORITHMS.md#advantages.
"""

from __future__ import annotations

import torch

from rl.algos.groups import grouped


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int, std_eps: float = 1e-6) -> torch.Tensor:
    """Group-centred advantages, one per completion.

    rewards: [B*G] float, groups contiguous → [B*G]. `std_eps` is accepted so every estimator in
    `ADVANTAGES` has the same signature; it is unused (there is no std to divide by).
    """
    groups = grouped(rewards.float(), group_size)
    return (groups - groups.mean(dim=1, keepdim=True)).view(-1)
