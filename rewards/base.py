"""Reward functions by name or path: the built-ins (`BUILTINS`), loading a user's `module:function` or
`file.py:function`, and checking its signature, options and the dataset columns it reads before any model
loads. The contract itself is `rewards.contract`."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from rewards import ifeval, rules
from rewards.boxed import boxed_format, boxed_int_match
from rewards.contract import DRIVER_COLUMNS, OnError, RewardFn

BUILTINS: dict[str, RewardFn] = {
    "math": rules.math_reward,
    "code": rules.code,
    "format": rules.think_format,
    "overlong": rules.overlong,
    "length": rules.length,
    "instructions": ifeval.instructions,
    "boxed_int": boxed_int_match,
    "boxed_format": boxed_format,
}

_CONTRACT = ("prompts", "completions")


@dataclass
class RewardSpec:
    """One configured reward: a label for metrics, the callable, its weight, fixed kwargs and the error policy."""

    label: str
    func: RewardFn
    weight: float = 1.0
    kwargs: dict = field(default_factory=dict)
    on_error: OnError = "raise"
    needs_columns: tuple[str, ...] = ()
    """Dataset columns the reward reads (checked against the data before any model loads)."""
    timeout_s: float | None = None
    """A call on a batch that has not returned by then leaves that batch unscored (`Failed`); None: no limit."""

    def check_columns(self, available: set[str]) -> None:
        """Raise ValueError naming the first column this reward needs that the data does not have."""
        for name in self.needs_columns:
            if name not in available:
                raise ValueError(
                    f"reward {self.label!r} needs the dataset column {name!r}, which the data does not have "
                    f"(columns: {', '.join(sorted(available - DRIVER_COLUMNS)) or 'none'}); "
                    "add it to the data or point the reward at another column"
                )


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
    func = import_function(fn)
    check_signature(func, fn, {})
    return func


def function_spec(
    *, name: str | None = None, fn: str | None = None, weight: float = 1.0, kwargs: dict | None = None,
    on_error: OnError = "raise", label: str | None = None,
) -> RewardSpec:
    """A `RewardSpec` for a built-in or user function, with its kwargs and needed columns checked."""
    func = load_reward_fn(name, fn)
    kwargs = dict(kwargs or {})
    ref = name or fn
    if name is not None:
        kwargs = _check_builtin_kwargs(func, name, kwargs)
    check_signature(func, ref, kwargs)
    label = label or name or fn.rpartition(":")[2]
    return RewardSpec(label, func, weight, kwargs, on_error, needed_columns(func, kwargs))


def import_function(ref: str, what: str = "reward fn") -> RewardFn:
    """The callable named by `package.module:function` or `path/to/file.py:function` (`what` names it in errors:
    a reward function, a code checker)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"{what} {ref!r} must look like `package.module:function` or `path/to/file.py:function`")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"{what} {ref!r}: file {target!r} not found")
        module_name = "user_reward_" + re.sub(r"\W", "_", str(path.resolve()))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # so dataclasses / pickling inside the user's file work
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"{what} {ref!r}: importing {target!r} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ValueError(f"{what} {ref!r}: cannot import module {target!r} ({e})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ValueError(f"{what} {ref!r}: {target!r} has no function {attr!r}")
    return func


def absolute_ref(ref: str) -> str:
    """`file.py:function` with the file's absolute path (a Ray worker's working directory may differ);
    a `module:function` reference unchanged."""
    target, _, attr = ref.rpartition(":")
    return f"{Path(target).resolve()}:{attr}" if target.endswith(".py") else ref


def check_signature(func: RewardFn, ref: str, kwargs: dict) -> None:
    """The function must accept `prompts=`, `completions=`, `step=`, `completion_ids=` and the kwargs as keyword
    arguments (that is how it is called, as TRL calls it: TRL-style `def f(completions, **kwargs)` works).
    Required parameters beyond those are dataset columns (`needed_columns`), checked against the data."""
    try:
        inspect.signature(func).bind_partial(**{"prompts": [], "completions": [], "step": 0, "completion_ids": [], **kwargs})
    except TypeError as e:
        extra = f" with kwargs {sorted(kwargs)}" if kwargs else ""
        raise ValueError(
            f"reward fn {ref!r} must accept (prompts, completions, **columns){extra}; calling it that way fails: {e}"
        ) from None


def _check_builtin_kwargs(func: RewardFn, name: str, kwargs: dict) -> dict:
    """Built-ins swallow columns with `**columns`, so a misspelt option would pass silently: check names. Each
    value is validated (and coerced: YAML reads `1e-6` as a string) by pydantic against the option's annotation,
    which may carry a validator of its own (the code reward's `checker` is loaded here)."""
    params = inspect.signature(func).parameters
    options = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and p not in DRIVER_COLUMNS]
    for key in kwargs:
        if key not in options:
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"reward {name!r} has no option {key!r}{hint} (options: {', '.join(options) or 'none'})")
    hints = typing.get_type_hints(func, include_extras=True)
    checked = {}
    for key, value in kwargs.items():
        try:
            checked[key] = TypeAdapter(hints[key]).validate_python(value) if key in hints else value
        except ValidationError as e:
            err = e.errors()[0]
            why = err["ctx"]["error"] if err["type"] == "value_error" else err["msg"]
            raise ValueError(f"reward {name!r} option {key}={value!r}: {why}") from None
    return checked


def needed_columns(func: RewardFn, kwargs: dict) -> tuple[str, ...]:
    """Columns a function reads: required named parameters that kwargs do not fill, and the value of every
    `*_column` option (configured or default)."""
    needed = []
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in _CONTRACT:
            continue
        if p.name.endswith("_column"):
            value = kwargs.get(p.name, p.default)
            if isinstance(value, str):
                needed.append(value)
        elif p.default is p.empty and p.name not in kwargs and p.name not in DRIVER_COLUMNS:
            needed.append(p.name)
    return tuple(needed)
