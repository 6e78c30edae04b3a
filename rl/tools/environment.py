"""`rollout.environment:` a stateful task, TRL's `environment_factory` convention (trl/trainer/grpo_trainer.py,
`GRPOTrainer.__init__` and `_generate`), so a class written for TRL plugs in unchanged:

- The spec (`module:Class` / `file.py:Class`, or a zero-argument factory function) is called once per rollout.
- `reset(**row) -> str | None` starts an episode with the dataset row's columns; a returned string is appended
  to the last message of the prompt (TRL: `content + observation`, no separator).
- Every public function of the class except `reset` and `get_reward` is a tool (TRL lists them with
  `inspect.getmembers(type(instance), inspect.isfunction)` and drops names starting with `_`), called on that
  rollout's instance; its schema comes from its type hints and docstring like any tool's.
- `get_reward() -> float`, when defined, is called once per finished rollout: the environment's own reward
  (weight 1, labelled with the class name, as TRL adds it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rl.tools.loading import import_object, tool_schemas

RESERVED = ("reset", "get_reward")


def load_environment(spec: str) -> Callable[[], Any]:
    """The class (or factory) a `rollout.environment` spec names, checked: it has a `reset` method and every tool
    method has a schema. A factory function is called once to find its instances' class (TRL probes one instance
    too). ValueError naming the spec."""
    factory = import_object(spec, "environment")
    if inspect.isclass(factory):
        cls = factory
    else:
        try:
            cls = type(factory())
        except Exception as e:
            raise ValueError(f"environment {spec!r}: calling the factory failed: {type(e).__name__}: {e}") from None
    if "reset" not in dict(inspect.getmembers(cls, inspect.isfunction)):
        raise ValueError(f"environment {spec!r}: {cls.__name__} has no `reset(self, **row)` method (an environment "
                         "needs one: it starts an episode for a dataset row)")
    for method in environment_tools(cls):
        tool_schemas([method], label=f"{spec} ({cls.__name__}.{method.__name__})")
    return factory


def environment_tools(env: Any) -> list[Callable]:
    """The tool methods of an environment instance (bound, so calling them acts on it), or of its class
    (unbound functions, enough for their schemas): public functions except `reset` / `get_reward`, by name."""
    cls = env if inspect.isclass(env) else type(env)
    names = [name for name, _ in inspect.getmembers(cls, inspect.isfunction)
             if name not in RESERVED and not name.startswith("_")]
    return [getattr(env, name) for name in names]
