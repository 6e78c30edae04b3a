"""Tools and environments for multi-turn rollouts (`rollout.tools`, `rollout.environment`), in TRL's conventions.

- `loading`: `load_tools(specs)` (built-in names or `module:function` / `file.py:function`) and
  `tool_schemas(tools)` (transformers' `get_json_schema`).
- `environment`: `load_environment(spec)` and `environment_tools(env)` (TRL's `environment_factory`).
- `calls`: `parse_tool_calls(text)` -> `ToolCall`s (Qwen3 / Hermes `<tool_call>` blocks).
- `runner`: `ToolRunner(functions).run([(call, env)])` -> `ToolResult`s (concurrent, time-limited, never raises
  for a tool's fault).
- `builtins`: `calculator` (exact, no eval) and `python` (bubblewrap sandbox).
Safety notes and the response formats: docs/TOOLS.md.
"""

from rl.tools.builtins import BUILTINS, calculator, python
from rl.tools.calls import ToolCall, parse_tool_calls
from rl.tools.environment import environment_tools, load_environment
from rl.tools.loading import load_tools, tool_schemas
from rl.tools.runner import ToolResult, ToolRunner, error_response

__all__ = [
    "BUILTINS",
    "ToolCall",
    "ToolResult",
    "ToolRunner",
    "calculator",
    "environment_tools",
    "error_response",
    "load_environment",
    "load_tools",
    "parse_tool_calls",
    "python",
    "tool_schemas",
]
