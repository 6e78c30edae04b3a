"""`rollout.weight_sync=object_store`: the learner's weights through Ray's object store (any engine)."""

from __future__ import annotations

from typing import Any

import ray

from rl.weight_sync.base import WeightSync


class ObjectStoreSync(WeightSync):
    """Through Ray's object store: one `weights()` result (learner rank 0's), pulled by every worker into
    `engine.load_weights`."""

    def __init__(self):
        self.engine_kwargs = {}

    def connect(self, learner: Any, workers: list) -> None:
        self.learner, self.workers = learner, workers

    def restore(self, index: int) -> None:
        """Only the new engine needs the weights."""
        gathering = self.learner.submit("weights")
        ray.get(self.workers[index].load_weights.remote(gathering.refs[0]))
        gathering.result()

    def push(self, timeout_s: float | None = None) -> None:
        gathering = self.learner.submit("weights")  # every rank gathers; rank 0 returns the weights
        gathering.result()
        ray.get([w.load_weights.remote(gathering.refs[0]) for w in self.workers], timeout=timeout_s)
