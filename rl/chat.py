"""Chat rendering with Qwen3's two modes: thinking (`<think>reasoning</think>answer`) and non-thinking.

Rules (Qwen3 technical report; in our words: docs/ALGORITHMS.md#qwen3-chat-modes):
- Mode flags `/think` and `/no_think` in user or system turns; the latest flag in the conversation wins;
  thinking is the default. `enable_thinking=False` is a hard switch: no thinking whatever the flags say
  (`True` is the same as `None`: the flags decide, as in Qwen3).
- A non-thinking response still carries an empty block, `<think>\\n\\n</think>\\n\\n` then the answer;
  `enable_thinking=False` pre-fills that block in the generation prompt.
- Reasoning of assistant turns before the last user query is dropped; turns after it keep their think block
  (the final assistant turn always gets one, empty when it has no reasoning). Reasoning comes from a message's
  `reasoning_content` or from a `<think>...</think>` inside its content.

Two styles, picked from the tokenizer's chat template by `render`:
- `qwen3`: a model with native thinking (Qwen3's official template). The text equals the official template's
  output (tests/test_chat.py compares them); flags stay in the text and the model itself obeys them.
- `fusion`: `THINKING_FUSION_TEMPLATE`, for models without native thinking (ChatML models such as SmolLM2;
  install it with `use_thinking_template`). Same turns as Qwen3, but the template enforces the resolved mode
  in the generation prompt: it opens `<think>\\n` when thinking and pre-fills the empty block when not, so an
  untrained model starts in the right mode and can be trained into both (the `format` reward's `open` /
  `closed` cases). Its jinja and `render` agree (tested), so `apply_chat_template` and vLLM render the same.

Only system / user / assistant messages with string content; tool calls and tool messages are not supported.
"""

from __future__ import annotations

from typing import Any, Literal

THINK_START, THINK_END = "<think>", "</think>"
EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
Style = Literal["qwen3", "fusion"]

_FUSION_MARKER = "rl.chat thinking-fusion template"
# Signature of Qwen3's hybrid-thinking template (the 2507 Thinking/Instruct templates lack `enable_thinking`).
_QWEN3_MARKERS = ("<|im_start|>", "enable_thinking", "reasoning_content", "last_query_index")

THINKING_FUSION_TEMPLATE = (
    "{#- " + _FUSION_MARKER + ": ChatML + Qwen3 think blocks, mode enforced in the generation prompt -#}\n"
    """{%- set ns = namespace(thinking=true, last_query_index=messages|length - 1, found=false) %}
{%- for message in messages %}
    {%- if message.role in ['user', 'system'] %}
        {%- set on = message.content.rfind('/think') %}
        {%- set off = message.content.rfind('/no_think') %}
        {%- if on > off %}{%- set ns.thinking = true %}{%- elif off > on %}{%- set ns.thinking = false %}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if enable_thinking is defined and enable_thinking is false %}{%- set ns.thinking = false %}{%- endif %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if not ns.found and message.role == 'user' and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.found = true %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- elif '</think>' in message.content %}
            {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}
            {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' + ('<think>\\n' if ns.thinking else '<think>\\n\\n</think>\\n\\n') }}
{%- endif %}"""
)


def thinking_enabled(messages: list[dict[str, Any]], enable_thinking: bool | None = None) -> bool:
    """The mode the next assistant turn is in: False if `enable_thinking is False`, else the latest flag in a
    user/system turn (`/no_think` → False, `/think` → True; within one message the later one), else True."""
    if enable_thinking is False:
        return False
    thinking = True
    for message in messages:
        if message["role"] in ("user", "system"):
            on, off = message["content"].rfind("/think"), message["content"].rfind("/no_think")
            if on != off:  # both -1 when the message has no flag
                thinking = on > off
    return thinking


def chat_style(tokenizer: Any) -> Style:
    """`fusion` for `THINKING_FUSION_TEMPLATE`, `qwen3` for Qwen3's hybrid-thinking template; ValueError else."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if _FUSION_MARKER in template:
        return "fusion"
    if all(marker in template for marker in _QWEN3_MARKERS):
        return "qwen3"
    raise ValueError(
        "rl.chat.render: the tokenizer's chat template has no Qwen3 thinking modes (neither Qwen3's template nor "
        "the thinking-fusion one); for a model without native thinking call "
        "rl.chat.use_thinking_template(tokenizer) first"
    )


def use_thinking_template(tokenizer: Any) -> Any:
    """Install `THINKING_FUSION_TEMPLATE` as `tokenizer.chat_template` (in place) and return the tokenizer.

    The think tags become text; for a thinking budget `</think>` must be one token (`rl.rollout.budget`
    says how to add it)."""
    tokenizer.chat_template = THINKING_FUSION_TEMPLATE
    return tokenizer


def render(
    messages: list[dict[str, Any]], tokenizer: Any, *, enable_thinking: bool | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The conversation as the model's text, in the style of the tokenizer's chat template (`chat_style`).

    messages: `[{"role": "system" | "user" | "assistant", "content": str, "reasoning_content"?: str}]`.
    `qwen3` style: exactly Qwen3's official template with the same `enable_thinking`. `fusion` style: the
    same turns, and a generation prompt that opens `<think>\\n` (thinking) or pre-fills the empty block (not).
    """
    style = chat_style(tokenizer)
    return render_text(messages, style, enable_thinking=enable_thinking, add_generation_prompt=add_generation_prompt)


def render_text(
    messages: list[dict[str, Any]], style: Style, *, enable_thinking: bool | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """`render` for a given style, without a tokenizer (pure)."""
    _check_messages(messages)
    last_query = _last_query_index(messages)
    parts = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            keep = i > last_query
            parts.append(_assistant_turn(message, keep_reasoning=keep, is_last=i == len(messages) - 1))
        else:
            parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + _generation_prefill(messages, style, enable_thinking))
    return "".join(parts)


def _generation_prefill(messages: list[dict[str, Any]], style: Style, enable_thinking: bool | None) -> str:
    if style == "qwen3":  # the native model reads the flags itself; only the hard switch pre-fills
        return EMPTY_THINK_BLOCK if enable_thinking is False else ""
    return THINK_START + "\n" if thinking_enabled(messages, enable_thinking) else EMPTY_THINK_BLOCK


def _check_messages(messages: list[dict[str, Any]]) -> None:
    if not messages:
        raise ValueError("rl.chat.render: empty conversation")
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"rl.chat.render: message {i} has role {role!r}; only system/user/assistant are supported")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"rl.chat.render: message {i} ({role}) needs string content")
        if message.get("tool_calls"):
            raise ValueError(f"rl.chat.render: message {i} has tool_calls, which are not supported")


def _last_query_index(messages: list[dict[str, Any]]) -> int:
    """Index of the last user turn that is not a wrapped tool response (Qwen3's `last_query_index`)."""
    for i in range(len(messages) - 1, -1, -1):
        content = messages[i]["content"]
        tool_response = content.startswith("<tool_response>") and content.endswith("</tool_response>")
        if messages[i]["role"] == "user" and not tool_response:
            return i
    return len(messages) - 1


def split_reasoning(message: dict[str, Any]) -> tuple[str, str]:
    """(reasoning, answer) of an assistant message, as Qwen3's template reads them: `reasoning_content` if
    given (content untouched), else the text inside `<think>...</think>` of the content and the text after."""
    content, reasoning = message["content"], message.get("reasoning_content")
    if reasoning is not None:
        return reasoning, content
    if THINK_END not in content:
        return "", content
    head, answer = content.split(THINK_END)[0], content.split(THINK_END)[-1]
    return head.rstrip("\n").split(THINK_START)[-1].lstrip("\n"), answer.lstrip("\n")


def _assistant_turn(message: dict[str, Any], *, keep_reasoning: bool, is_last: bool) -> str:
    reasoning, answer = split_reasoning(message)
    if keep_reasoning and (is_last or reasoning):
        reasoning, answer = reasoning.strip("\n"), answer.lstrip("\n")
        return f"<|im_start|>assistant\n{THINK_START}\n{reasoning}\n{THINK_END}\n\n{answer}<|im_end|>\n"
    return f"<|im_start|>assistant\n{answer}<|im_end|>\n"
