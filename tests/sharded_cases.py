"""The learners and the batch that tests/test_sharded_learner.py compares between 1 and 2 ranks (shared with
tests/sharded_worker.py, which runs the ranks under torchrun)."""

from __future__ import annotations

import random

from rl.config import AlgorithmConfig, LoraConfig, ModelConfig, TrainerConfig
from rl.learner import Learner, TrainBatch

# float32, with the KL term (k3 to the frozen start model) and a fixed entropy bonus on
ALGORITHM = {"kl_beta": 0.1, "entropy": {"mode": "fixed", "coef": 0.01}}
LORA = LoraConfig(r=4, alpha=8)
CASES = {
    "padded": {"micro_batch_size": 2, "share_prompts": False},
    "shared": {"micro_batch_size": 3},
    "packed": {"token_budget": 40},
}


def batch(seed: int = 0, groups: int = 5, group: int = 2) -> TrainBatch:
    """`groups` prompt groups of `group` completions: 5 groups split 3 / 2 across two ranks, so one rank runs
    fewer micro-batches and pads."""
    rng = random.Random(seed)
    prompts = [p for _ in range(groups) for p in [[rng.randrange(3, 500) for _ in range(rng.randrange(4, 12))]] * group]
    n = len(prompts)
    completions = [[rng.randrange(3, 500) for _ in range(rng.randrange(1, 10))] for _ in range(n)]
    old = [[-6.2 + rng.uniform(-0.1, 0.1) for _ in c] for c in completions]
    return TrainBatch(prompts, completions, old, [rng.uniform(-1, 1) for _ in range(n)], group_size=group)


def make_learner(model_dir: str, resume_from: str | None = None, lora: LoraConfig | None = None,
                 **trainer) -> Learner:
    trainer = {"max_steps": 4, "lr": 1e-2, "max_grad_norm": 1e9, **trainer}
    return Learner(model_dir, ModelConfig(path=model_dir, dtype="float32", lora=lora), TrainerConfig(**trainer),
                   AlgorithmConfig(**ALGORITHM), temperature=1.0, resume_from=resume_from, max_completion_tokens=10)
