"""Pure maths over tensors: advantage estimators, policy losses, aggregation, KL estimators, entropy control.

No engines, models or Ray here. Each estimator / loss is one small file; the registries below map a config's
`type` string to the function, so adding a variant is one file plus one line.

Formulas of every function here, in our notation: docs/ALGORITHMS.md.
"""

from rl.algos.aggregation import AGGREGATIONS, aggregate
from rl.algos.covariance import clip_cov_mask, detach_where, kl_cov_penalty, token_covariance
from rl.algos.dr_grpo_advantage import dr_grpo_advantages
from rl.algos.entropy_control import EntropyController
from rl.algos.groups import group_reward_std, informative_groups, scored_advantages
from rl.algos.grpo_advantage import grpo_advantages
from rl.algos.gspo import gspo_token_loss
from rl.algos.kl import KL_ESTIMATORS, kl_per_token
from rl.algos.logprobs import token_entropy, token_logprobs, token_logprobs_and_entropy
from rl.algos.mismatch import CORRECTIONS, mismatch_kl, mismatch_weights
from rl.algos.ppo_clip import ppo_clip_token_loss
from rl.algos.rloo_advantage import rloo_advantages

ADVANTAGES = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}
TOKEN_LOSSES = {"ppo_clip": ppo_clip_token_loss, "gspo": gspo_token_loss}

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "CORRECTIONS",
    "KL_ESTIMATORS",
    "TOKEN_LOSSES",
    "EntropyController",
    "aggregate",
    "clip_cov_mask",
    "detach_where",
    "dr_grpo_advantages",
    "grpo_advantages",
    "gspo_token_loss",
    "group_reward_std",
    "informative_groups",
    "scored_advantages",
    "kl_cov_penalty",
    "kl_per_token",
    "mismatch_kl",
    "mismatch_weights",
    "ppo_clip_token_loss",
    "rloo_advantages",
    "token_covariance",
    "token_entropy",
    "token_logprobs",
    "token_logprobs_and_entropy",
]
