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
        model's weights."""

    @abstractmethod
    def push(self) -> None:
        """The learner's current weights into every engine; returns once all of them serve the new weights."""
