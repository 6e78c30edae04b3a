"""User tools and an environment for the multi-turn tests, written exactly as TRL documents them (type hints and a
Google-style docstring; an environment class with `reset`, tool methods and `get_reward`)."""

from __future__ import annotations

import time


def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why it fails.
    """
    raise RuntimeError(f"boom: {reason}")


def sleepy(seconds: float) -> str:
    """Sleeps, then says so.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return "awake"


class CounterEnv:
    """A counter the policy increments; the reward is the final count (TRL's `environment_factory` convention)."""

    def __init__(self):
        self.count = 0

    def reset(self, **row) -> str | None:
        self.count = int(row.get("start", 0))
        return f" The counter is at {self.count}."

    def increment(self, by: int) -> str:
        """Add to the counter.

        Args:
            by: The amount to add.

        Returns:
            The new count.
        """
        self.count += by
        return str(self.count)

    def get_reward(self) -> float:
        return float(self.count)
