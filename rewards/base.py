"""Loading reward functions by name / path, calling them under the contract, and the weighted sum."""

from __future__ import annotations

import asyncio
import difflib
import importlib
import importlib.util
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.boxed import boxed_format, boxed_int_match

RewardFn = Callable[..., Any]

BUILTINS: dict[str, RewardFn] = {
    "boxed_int": boxed_int_match,
    "boxed_format": boxed_format,
}


def load_reward_fn(name: str | None = None, fn: str | None = None) -> RewardFn:
    """Resolve a built-in `name` or a `module:function` / `file.py:function` reference, checking the signature.

    Raises ValueError naming what is wrong (unknown name with a suggestion, missing file/module/function,
    a function that cannot take `(prompts, completions, **columns)`).
    """
    if (name is None) == (fn is None):
        raise ValueError("a reward needs exactly one of `name` or `fn`")
    if name is not None:
        if name not in BUILTINS:
            close = difflib.get_close_matches(name, BUILTINS, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown reward name {name!r}{hint} (built-ins: {', '.join(sorted(BUILTINS))})")
        return BUILTINS[name]
    func = _import_function(fn)
    _check_signature(func, fn)
    return func


def _import_function(ref: str) -> RewardFn:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"reward fn {ref!r} must look like `package.module:function` or `path/to/file.py:function`")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"reward fn {ref!r}: file {target!r} not found")
        spec = importlib.util.spec_from_file_location(f"user_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ValueError(f"reward fn {ref!r}: cannot import module {target!r} ({e})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ValueError(f"reward fn {ref!r}: {target!r} has no function {attr!r}")
    return func


def _check_signature(func: RewardFn, ref: str) -> None:
    try:
        inspect.signature(func).bind([], [], step=0, completion_ids=[])
    except TypeError as e:
        raise ValueError(
            f"reward fn {ref!r} must accept (prompts, completions, **columns); calling it that way fails: {e}"
        ) from None


def call_reward(func: RewardFn, prompts: list, completions: list, columns: dict[str, list]) -> list[float | None]:
    """Call one reward under the contract (awaiting it if async) and check its output."""
    out = func(prompts, completions, **columns)
    if inspect.isawaitable(out):
        out = asyncio.run(_await(out))
    return _validated(out, len(completions), getattr(func, "__name__", repr(func)))


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _validated(values: Any, n: int, name: str) -> list[float | None]:
    if not isinstance(values, Sequence) or len(values) != n:
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ValueError(f"reward {name!r} returned {got} values for {n} completions")
    clean: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            clean.append(None)
            continue
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"reward {name!r} returned {v} for sample {i}")
        clean.append(v)
    return clean


@dataclass
class RewardSpec:
    """One configured reward: a label for metrics, the function, its weight and fixed kwargs."""

    label: str
    func: RewardFn
    weight: float = 1.0
    kwargs: dict = field(default_factory=dict)


class WeightedRewards:
    """The step reward: Σ_k w_k r_k over the rewards that returned a value for the sample."""

    def __init__(self, specs: list[RewardSpec]):
        self.specs = specs

    def __call__(self, prompts: list, completions: list, columns: dict[str, list]) -> tuple[list[float], dict]:
        """Returns (total reward per sample, metrics `reward/<label>/mean|none_rate|time_s`)."""
        totals = [0.0] * len(completions)
        metrics: dict[str, float] = {}
        for spec in self.specs:
            start = time.perf_counter()
            values = call_reward(spec.func, prompts, completions, {**columns, **spec.kwargs})
            present = [v for v in values if v is not None]
            for i, v in enumerate(values):
                if v is not None:
                    totals[i] += spec.weight * v
            metrics[f"reward/{spec.label}/mean"] = sum(present) / len(present) if present else float("nan")
            metrics[f"reward/{spec.label}/none_rate"] = 1.0 - len(present) / max(len(values), 1)
            metrics[f"reward/{spec.label}/time_s"] = time.perf_counter() - start
        return totals, metrics
