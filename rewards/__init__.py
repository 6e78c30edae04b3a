"""Reward functions under one contract (TRL-compatible):

    fn(prompts: list, completions: list, **columns) -> list[float | None]

`columns` holds every dataset column of each sample's row (repeated per completion), plus `completion_ids`
and `step`. `None` means "not applicable to this sample" and is left out of the weighted sum. `async def`
functions are awaited concurrently. Built-ins are registered in `BUILTINS`; user functions are named
`package.module:function` or `path/to/file.py:function`.
"""

from rewards.base import BUILTINS, RewardSpec, WeightedRewards, load_reward_fn

__all__ = ["BUILTINS", "RewardSpec", "WeightedRewards", "load_reward_fn"]
