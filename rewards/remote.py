"""Ray reward workers: a `name:`/`fn:` reward with `worker: true` runs in a Ray actor process of its own.

CPU-heavy Python rewards then run in parallel with each other and with the driver (each in its own process,
outside the driver's GIL). `RewardWorker` is the plain class inside the actor: it loads the function by its
reference there (a `file.py` path is made absolute first) and calls it under the contract; `RemoteReward` is
the driver-side callable. The judge and the reward model need no such wrapper: they wait on HTTP or on their
own actor.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from rewards.base import absolute_ref, load_reward_fn


class RewardWorker:
    """Holds one reward function in a worker process."""

    def __init__(self, name: str | None, fn: str | None):
        self.func = load_reward_fn(name, fn)

    def score(self, prompts: list, completions: list, columns: dict[str, Any]) -> list:
        out = self.func(prompts=prompts, completions=completions, **columns)
        if inspect.isawaitable(out):
            out = asyncio.run(_await(out))
        return list(out)


async def _await(awaitable: Any) -> Any:
    return await awaitable


class RemoteReward:
    """Sync callable under the reward contract that forwards each call to a `RewardWorker` actor (started on
    the first call)."""

    def __init__(self, name: str | None, fn: str | None):
        fn = absolute_ref(fn) if fn is not None else None  # the worker's working directory may differ
        self.name, self.fn = name, fn
        self.__name__ = name or fn.rpartition(":")[2]
        self._actor = None

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list:
        import ray

        if self._actor is None:
            self._actor = ray.remote(num_cpus=0)(RewardWorker).remote(self.name, self.fn)
        # log_metric is a closure over the driver's metrics: it cannot report from another process
        columns = {k: v for k, v in columns.items() if k != "log_metric"}
        try:
            return ray.get(self._actor.score.remote(prompts, completions, columns))
        except ray.exceptions.RayTaskError as e:  # re-raise what the function raised, not Ray's wrapper
            raise (e.cause if isinstance(e.cause, Exception) else e) from None
