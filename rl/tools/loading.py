"""`rollout.tools:` entries to functions, checked before any model loads, and their JSON schemas.

A tool is a plain Python function with type hints and a Google-style docstring, exactly what TRL's
`GRPOTrainer(tools=...)` and transformers' chat templates take (`transformers.utils.get_json_schema` turns it into
`{"type": "function", "function": {"name", "description", "parameters"}}`; its name is the function's `__name__`).
An entry is a built-in name (`calculator`, `python`) or `module:function` / `path/to/file.py:function`, imported by
the reward loader (`rewards.base`), so paths resolve the same way (relative to the working directory).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl.tools.builtins import BUILTINS

_SPECS: weakref.WeakKeyDictionary[Callable, str] = weakref.WeakKeyDictionary()
"""Loaded user function -> the spec a worker process imports it by (file paths made absolute)."""


def import_object(spec: str, what: str) -> Any:
    """`module:name` / `file.py:name` through the reward loader; ValueError that names `what` and the spec."""
    from rewards.base import import_function

    return import_function(spec, what=what)


def load_tools(specs: list[str]) -> list[Callable]:
    """The functions of `rollout.tools` entries, in order. ValueError naming the entry when it cannot be loaded
    (unknown built-in, with a did-you-mean; missing file / module / function), when get_json_schema cannot
    describe it (a parameter without a type hint or without a description in the docstring), when two tools
    share a name, or when `python` is asked for on a machine without bubblewrap."""
    functions = []
    for spec in specs:
        func = _load_one(spec)
        tool_schemas([func], label=spec)
        functions.append(func)
    names = [f.__name__ for f in functions]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two tools are named {name!r} ({specs}); the model calls tools by name")
    return functions


def _load_one(spec: str) -> Callable:
    if ":" not in spec:
        if spec not in BUILTINS:
            close = difflib.get_close_matches(spec, BUILTINS, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown built-in tool {spec!r}{hint} (built-ins: {', '.join(sorted(BUILTINS))}; "
                             "a function of yours is `module:function` or `path/to/file.py:function`)")
        if spec == "python":
            _check_sandbox()
        return BUILTINS[spec]
    func = import_object(spec, "tool")
    if not (inspect.isfunction(func) or inspect.ismethod(func)):
        raise ValueError(f"tool {spec!r} is a {type(func).__name__}, not a function (transformers' chat templates "
                         "take functions with type hints and a Google-style docstring)")
    target, _, attr = spec.rpartition(":")
    _SPECS[func] = f"{Path(target).resolve()}:{attr}" if target.endswith(".py") else spec
    return func


def _check_sandbox() -> None:
    from verifiers.sandbox import SandboxUnavailable, make_sandbox

    try:
        make_sandbox("bwrap")
    except SandboxUnavailable as e:
        raise ValueError(f"tool 'python' runs code in the bubblewrap sandbox, which is unavailable here: {e}") from None


def spec_of(func: Callable) -> str | None:
    """How a worker process imports `func`: its load_tools spec, else `module:qualname` for a module-level
    function of an importable module, else None."""
    if func in _SPECS:
        return _SPECS[func]
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        return None
    try:
        found = getattr(importlib.import_module(module), qualname, None)
    except ImportError:
        return None
    return f"{module}:{qualname}" if found is func else None


def tool_schemas(tools: list[Callable | dict], *, label: str | None = None) -> list[dict]:
    """The `{"type": "function", "function": {...}}` schemas that chat templates take in their `tools` argument
    (transformers' `get_json_schema`; a dict is taken as a schema already). ValueError naming the tool."""
    from transformers.utils import get_json_schema

    schemas = []
    for tool in tools:
        if isinstance(tool, dict):
            schemas.append(tool)
            continue
        try:
            schemas.append(get_json_schema(tool))
        except Exception as e:  # transformers raises its own TypeHintParsingException / DocstringParsingException
            name = label or getattr(tool, "__qualname__", repr(tool))
            raise ValueError(
                f"tool {name!r}: transformers' get_json_schema cannot describe it ({e}); a tool needs a type hint "
                "on every parameter and a Google-style docstring with an `Args:` line for each one"
            ) from None
    return schemas
