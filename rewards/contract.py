"""The reward contract, with nothing else in it (every other reward module imports it; it imports none of them):

    fn(prompts: list, completions: list, **columns) -> list[float | None | Failed]

A value is a reward; `None` means "not applicable to this sample"; `Failed(reason)` means "could not be graded"
(a verifier timeout, an HTTP error, an unparseable judge reply): like `None` it is left out of the weighted sum,
but it is counted as an error in the metrics. Plain TRL reward functions never return `Failed` and work unchanged.
`columns` are the dataset columns of each sample's row plus `DRIVER_COLUMNS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RewardFn = Callable[..., Any]
OnError = Literal["raise", "skip"]

DRIVER_COLUMNS = frozenset({"completion_ids", "step", "rendered_prompt", "max_completion_tokens", "tool_calls",
                            "tool_errors", "environments"})
"""Keyword arguments the drivers add to the dataset columns on every call (the last three in runs with tools:
tool calls and error responses per trajectory, and each trajectory's environment instance)."""


@dataclass(frozen=True)
class Failed:
    """A sample the reward could not grade (infrastructure outcome, not a reward): `reason` says why."""

    reason: str


class RewardError(RuntimeError):
    """A reward function raised (or returned something outside the contract); the message names the reward,
    the sample index and the start of its prompt."""


def validated(values: Any, n: int, label: str) -> list[float | None | Failed | ValueError]:
    """Check a reward's output: a sequence of n values (a list, a tuple, a 1-D numpy array or tensor), each a finite
    number, None or Failed.

    A wrong length raises ValueError (the whole batch is unusable); a bad single value becomes a ValueError
    in its slot, so the caller can name the sample.
    """
    if hasattr(values, "tolist") and not isinstance(values, str | bytes):  # a numpy array or a tensor, as TRL allows
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, Sequence) else f"a {type(values).__name__}"
        raise ValueError(f"reward {label!r} returned {got} for {n} completions (it must return one value each)")
    out: list[float | None | Failed | ValueError] = []
    for v in values:
        if v is None or isinstance(v, Failed):
            out.append(v)
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            out.append(ValueError(f"returned {v!r}, not a number"))
            continue
        out.append(x if math.isfinite(x) else ValueError(f"returned {x}"))
    return out
