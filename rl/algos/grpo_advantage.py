"""GRPO advantages (DeepSeekMath, arXiv 2402.03300): A_i = (r_i - mean_group r) / (std_group r + eps).

Formula: docs/ALGORITHMS.md#advantages.
"""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, group_size: int, std_eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised advantages, one per completion (broadcast to every token by the loss).

    rewards: [B*G] float, completions of the same prompt contiguous (B prompts × G completions).
    Returns [B*G]. std is the unbiased sample std of the group; a group whose rewards are all equal gets
    A = 0 exactly (no signal), never a division blow-up.
    """
    if rewards.ndim != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True, unbiased=True)
    # equal rewards that are not exact in binary (8 x 0.7) leave a rounding residue of ~1e-8 in both `centred`
    # and `std`, which the division would turn into |A| ~ 0.05: zero it where the group's rewards are all equal
    constant = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)
    return torch.where(constant, 0.0, centred / (std + std_eps)).view(-1)
