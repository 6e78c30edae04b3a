"""The interface every weight-sync backend implements (`rl.weight_sync`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class WeightSync(ABC):
    """One way for weights to travel from the learner actor to the rollout workers."""

    engine_kwargs: dict[str, Any]
    """What each rollout engine needs at construction to receive this way (merged into its kwargs)."""

    @abstractmethod
    def connect(self, learner: Any, workers: list) -> None:
        """Once, after the actors exist: open the channel (a collective one blocks until every side joined).
        `learner` is the `rl.actors.LearnerGroup`; rank 0 sends, every rank takes part in gathering a sharded
        model's weights. Implementations keep `learner` and `workers` (the group's list, which a restart
        updates in place)."""

    @abstractmethod
    def push(self, timeout_s: float | None = None) -> None:
        """The learner's current weights into every engine; returns once all of them serve the new weights.
        `timeout_s`: how long engines may take to load them (`ray.exceptions.GetTimeoutError` after that), where
        the backend can tell (the object store); a dead engine raises `ray.exceptions.RayActorError`."""

    def restore(self, index: int) -> None:
        """Engine `index` was replaced by a fresh one (`rl.actors.RolloutGroup.restart`): give it the current
        weights. Here: reopen the channel with every engine, then push to all."""
        self.connect(self.learner, self.workers)
        self.push()
