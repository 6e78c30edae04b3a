"""Tool calls in a model's text: Qwen3 / Hermes `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`.

Rules (the convention of Qwen3's chat template and of TRL's `qwen3_schema` parser, trl/chat_template_utils.py):
- Every closed `<tool_call>...</tool_call>` block is one call, in order; several per turn are allowed. An
  unclosed block (the turn was cut) is not a call.
- Only the answer part of a turn is searched: when the text has `</think>`, blocks before the last one are
  reasoning, not calls (as Qwen3's parser and vLLM's reasoning + tool parsers read them).
- `arguments` missing or null means no arguments (TRL normalises it to `{}` too); a JSON string holding an
  object (OpenAI style) is decoded.
- Unlike TRL, which drops the malformed calls of a turn silently (`parse_response` falls back to plain text), a
  malformed block becomes a `ToolCall` with `error` set, so the model gets an error message as the tool's
  response and can learn from it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One parsed call. `error` is None for a well-formed call; else it says what is wrong (then `name` may be
    None and `arguments` is None). `raw`: the text between the tags."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None
    raw: str = ""

    def as_message(self) -> dict[str, Any]:
        """The call in OpenAI / transformers chat format (what `rl.chat.render` and chat templates take in an
        assistant message's `tool_calls`)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The calls in one assistant turn's text, in order (see the module docstring). Never raises."""
    answer = text.rsplit("</think>", 1)[-1]
    return [_parse_block(m.group(1)) for m in _BLOCK.finditer(answer)]


def _parse_block(raw: str) -> ToolCall:
    body = raw.strip()
    if not body:
        return ToolCall(None, None, "the <tool_call> block is empty", raw)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as e:
        return ToolCall(None, None, f"the <tool_call> block is not valid JSON ({e})", raw)
    if not isinstance(payload, dict):
        return ToolCall(None, None, f"the <tool_call> block must hold a JSON object, got {type(payload).__name__}",
                        raw)
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        return ToolCall(None, None, 'the tool call has no "name" string', raw)
    arguments = payload.get("arguments")
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            return ToolCall(name, None, f'the "arguments" string of {name!r} is not valid JSON ({e})', raw)
    if not isinstance(arguments, dict):
        return ToolCall(name, None, f'the "arguments" of {name!r} must be a JSON object, got '
                                    f"{type(arguments).__name__}", raw)
    return ToolCall(name, arguments, None, raw)
