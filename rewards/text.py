"""Small text helpers shared by the built-in rewards: completion text, thinking blocks, boxed answers."""

from __future__ import annotations

from typing import Any, Literal

ThinkMode = Literal["write", "open", "closed"]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is, a chat completion (message list) by its last message."""
    if isinstance(completion, list):
        return completion[-1]["content"] if completion else ""
    return completion


def prompt_text(prompt: Any) -> str:
    """The question of a prompt: a string as is, chat messages by the content of the last user message."""
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else (prompt[-1]["content"] if prompt else "")
    return prompt


def after_thinking(text: str) -> str | None:
    """The text after the last `</think>`; the whole text when there are no think tags; None while a
    `<think>` block is still open (the model never reached its answer)."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    return text


def answer_part(text: str, rendered_prompt: str | None = None) -> str | None:
    """`after_thinking`, aware of a chat template that opened `<think>` in the prompt: then a completion
    without `</think>` never left its reasoning, so it has no answer (None)."""
    if rendered_prompt is not None and "</think>" not in text and think_mode(rendered_prompt) == "open":
        return None
    return after_thinking(text)


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (nested braces balanced), or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 1, start + len("\\boxed{")
        begin = i
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[begin : i - 1].strip()
        start = text.rfind("\\boxed{", 0, start)  # unbalanced: try the one before
    return None


def think_mode(rendered_prompt: str) -> ThinkMode:
    """What the chat template already wrote into the generation prompt.

    - `open`: the prompt ends inside an opened `<think>` (templates that force thinking): the completion
      continues the reasoning and must close it, `...</think>answer`, without a `<think>` of its own.
    - `closed`: the prompt ends with a closed think block (Qwen3's `enable_thinking=False` pre-fills
      `<think>\\n\\n</think>\\n\\n`): the completion is the answer alone, no tags.
    - `write`: the completion writes the whole `<think>...</think>answer` itself.
    """
    opened = rendered_prompt.rfind("<think>")
    if opened == -1:
        return "write"
    closed = rendered_prompt.find("</think>", opened)
    if closed == -1:
        return "open"
    if not rendered_prompt[closed + len("</think>") :].strip():
        return "closed"
    return "write"  # think tags only in earlier turns
