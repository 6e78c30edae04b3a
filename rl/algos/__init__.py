"""Pure maths over tensors: advantage estimators, policy losses, KL estimators, entropy.

No engines, models or Ray here. Each estimator / loss is one small file; the registries below map a config's
`type` string to the function, so adding a variant is one file plus one line.
"""

from rl.algos.entropy import token_entropy
from rl.algos.grpo_advantage import grpo_advantages
from rl.algos.kl import KL_ESTIMATORS, kl_per_token
from rl.algos.logprobs import token_logprobs
from rl.algos.ppo_clip import ppo_clip_loss

ADVANTAGES = {"grpo": grpo_advantages}
POLICY_LOSSES = {"ppo_clip": ppo_clip_loss}

__all__ = [
    "ADVANTAGES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "grpo_advantages",
    "kl_per_token",
    "ppo_clip_loss",
    "token_entropy",
    "token_logprobs",
]
