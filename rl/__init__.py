"""GRPO training: config, rollout engines, learner, algorithms and the `python -m rl.grpo` driver."""
