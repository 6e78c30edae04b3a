"""Reward functions under one contract (TRL-compatible):

    fn(prompts: list, completions: list, **columns) -> list[float | None]

`columns` holds every dataset column of each sample's row (repeated per completion), plus `completion_ids`,
`step`, `rendered_prompt` (the prompt text after the chat template) and `max_completion_tokens`. `None` means
"not applicable to this sample" and is left out of the weighted sum; a reward may also return
`Failed(reason)` for a sample it could not grade (counted as an error, not a reward). `async def` functions are
awaited concurrently. Sources of a reward (`build_spec`): a built-in `name` (`BUILTINS`), a user `fn`
(`package.module:function` or `path/to/file.py:function`), a `judge` LLM grading against a reference
(`rewards.judge`), or a learned reward `model` (`rewards.reward_model`); `worker=True` runs a name/fn reward
in a Ray worker process (`rewards.remote`). `WeightedRewards` runs them all concurrently and sums them;
`from_config` builds it from a run's `rewards:` entries (`RewardConfig`) and `WeightedRewards.score_rows` is how
every driver (GRPO, distillation, evaluation, the data tools) scores sampled completions of dataset rows.
"""

from rewards.base import BUILTINS, RewardSpec, load_reward_fn
from rewards.build import build_spec, from_config
from rewards.contract import DRIVER_COLUMNS, Failed, RewardError
from rewards.runner import Scores, WeightedRewards, call_reward
from rewards.settings import RewardConfig

__all__ = ["BUILTINS", "DRIVER_COLUMNS", "Failed", "RewardConfig", "RewardError", "RewardSpec", "Scores",
           "WeightedRewards", "build_spec", "call_reward", "from_config", "load_reward_fn"]
