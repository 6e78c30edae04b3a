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

Tools, as in Qwen3's template (both styles render them alike; tests/test_chat.py compares with the official
template): `tools` (JSON schemas, or functions with type hints and a Google-style docstring, turned into schemas
by transformers' `get_json_schema`) go into the system turn under `# Tools`; an assistant message's `tool_calls`
(OpenAI format, arguments a dict or a JSON string) follow its content as `<tool_call>` blocks; consecutive `tool`
messages form one user turn of `<tool_response>` blocks, which does not count as a user query.
`tool_turn_text` is the text a multi-turn rollout inserts after an assistant turn that called tools.

Messages: system / user / assistant / tool, with string content.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

THINK_START, THINK_END = "<think>", "</think>"
EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
Style = Literal["qwen3", "fusion"]

TOOLS_INTRO = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_OUTRO = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
               '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
               "<args-json-object>}\n</tool_call>")


def _jinja_string(text: str) -> str:
    """`text` escaped for a single-quoted jinja string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


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
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- '""" + _jinja_string(TOOLS_INTRO) + """' }}
    {%- for tool in tools %}
        {{- '\\n' }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- '""" + _jinja_string(TOOLS_OUTRO + "<|im_end|>\n") + """' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
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
        {%- for tool_call in message.tool_calls or [] %}
            {%- if (loop.first and content) or (not loop.first) %}
                {{- '\\n' }}
            {%- endif %}
            {%- if tool_call.function %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- elif not (loop.first and message.role == 'system') %}
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


Tools = list[dict[str, Any] | Callable[..., Any]]


def render(
    messages: list[dict[str, Any]], tokenizer: Any, *, tools: Tools | None = None,
    enable_thinking: bool | None = None, add_generation_prompt: bool = True,
) -> str:
    """The conversation as the model's text, in the style of the tokenizer's chat template (`chat_style`).

    messages: `[{"role": "system" | "user" | "assistant" | "tool", "content": str, "reasoning_content"?: str,
    "tool_calls"?: [{"type": "function", "function": {"name": str, "arguments": dict | str}}]}]`.
    tools: JSON schemas or functions (what `apply_chat_template(tools=...)` takes).
    `qwen3` style: exactly Qwen3's official template with the same `enable_thinking`. `fusion` style: the
    same turns, and a generation prompt that opens `<think>\\n` (thinking) or pre-fills the empty block (not).
    """
    style = chat_style(tokenizer)
    return render_text(messages, style, tools=tools, enable_thinking=enable_thinking,
                       add_generation_prompt=add_generation_prompt)


def render_text(
    messages: list[dict[str, Any]], style: Style, *, tools: Tools | None = None,
    enable_thinking: bool | None = None, add_generation_prompt: bool = True,
) -> str:
    """`render` for a given style, without a tokenizer (pure, except that functions in `tools` are described
    by transformers' `get_json_schema`)."""
    _check_messages(messages)
    last_query = _last_query_index(messages)
    parts = [_system_turn(messages, _schemas(tools))]
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "assistant":
            keep = i > last_query
            parts.append(_assistant_turn(message, keep_reasoning=keep, is_last=i == len(messages) - 1))
        elif role == "tool":
            first = i == 0 or messages[i - 1]["role"] != "tool"
            last = i == len(messages) - 1 or messages[i + 1]["role"] != "tool"
            parts.append(("<|im_start|>user" if first else "") + _tool_response(message["content"])
                         + ("<|im_end|>\n" if last else ""))
        elif not (i == 0 and role == "system"):  # a leading system message is in `_system_turn`
            parts.append(f"<|im_start|>{role}\n{message['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + _generation_prefill(messages, style, enable_thinking))
    return "".join(parts)


def tool_turn_text(
    tool_contents: list[str], style: Style, *, enable_thinking: bool | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> str:
    """The text the template puts between an assistant turn that called tools and the next assistant turn's
    content: from the `\\n` after that turn's `<|im_end|>` (the model samples `<|im_end|>` itself) through the
    user turn of `<tool_response>` blocks (one per content, in order) and the generation prompt with its
    pre-fill (as `render(..., add_generation_prompt=True)`; in `fusion` style the mode comes from `messages`,
    the conversation so far, and `enable_thinking`).

    `render(conversation)[:-1] + tool_turn_text(...)` equals the rendering of the conversation with the tool
    messages appended whenever the assistant turn renders the same as the last turn and as a history turn:
    always, except for a turn with empty reasoning, whose empty think block Qwen3's template keeps only while
    it is the last turn. A rollout appends these tokens after the sampled ones, so it is exact either way.
    """
    if not tool_contents:
        raise ValueError("tool_turn_text: no tool responses")
    body = "".join(_tool_response(content) for content in tool_contents)
    prefill = _generation_prefill(messages or [], style, enable_thinking)
    return f"\n<|im_start|>user{body}<|im_end|>\n<|im_start|>assistant\n{prefill}"


def check_tools_rendered(text: str, tools: list[dict[str, Any]] | None) -> str:
    """`text` (a chat template's rendering with `tools`) unchanged, or a ValueError when the template dropped the
    tools' schemas (ChatML templates such as SmolLM2's ignore `tools` silently: the model would never see them)."""
    missing = [t["function"]["name"] for t in tools or [] if t["function"]["name"] not in text]
    if missing:
        raise ValueError(f"the tokenizer's chat template ignores `tools` (no {', '.join(missing)} in the rendered "
                         "prompt): the model would never see the tools; set data.thinking_template: true (Qwen3's "
                         "template, which renders them) or give the model a template that does")
    return text


def _tool_response(content: str) -> str:
    return f"\n<tool_response>\n{content}\n</tool_response>"


def _schemas(tools: Tools | None) -> list[dict[str, Any]]:
    if not tools:
        return []
    from rl.tools.loading import tool_schemas

    return tool_schemas(tools)


def _system_turn(messages: list[dict[str, Any]], schemas: list[dict[str, Any]]) -> str:
    """Qwen3's first turn: the leading system message, and the tools' schemas when there are tools."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    if not schemas:
        return "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
    listed = "".join("\n" + json.dumps(schema, ensure_ascii=False) for schema in schemas)
    head = "" if system is None else system + "\n\n"
    return f"<|im_start|>system\n{head}{TOOLS_INTRO}{listed}{TOOLS_OUTRO}<|im_end|>\n"
def _generation_prefill(messages: list[dict[str, Any]], style: Style, enable_thinking: bool | None) -> str:
    if style == "qwen3":  # the native model reads the flags itself; only the hard switch pre-fills
        return EMPTY_THINK_BLOCK if enable_thinking is False else ""
    return THINK_START + "\n" if thinking_enabled(messages, enable_thinking) else EMPTY_THINK_BLOCK


def _check_messages(messages: list[dict[str, Any]]) -> None:
    if not messages:
        raise ValueError("rl.chat.render: empty conversation")
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"rl.chat.render: message {i} has role {role!r}; only system/user/assistant/tool are "
                             "supported")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"rl.chat.render: message {i} ({role}) needs string content")
        if message.get("tool_calls") and role != "assistant":
            raise ValueError(f"rl.chat.render: message {i} ({role}) has tool_calls; only assistant messages can")
        for call in message.get("tool_calls") or []:
            function = call.get("function") or call
            if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), dict | str):
                raise ValueError(f"rl.chat.render: message {i} has a tool call without a name and arguments "
                                 f"(a dict or a JSON string): {call!r}")


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
        shown_reasoning, shown_answer = reasoning.strip("\n"), answer.lstrip("\n")
        head = f"<|im_start|>assistant\n{THINK_START}\n{shown_reasoning}\n{THINK_END}\n\n{shown_answer}"
    else:
        head = f"<|im_start|>assistant\n{answer}"
    # Qwen3: a newline before the first call only when the (unstripped) answer is not empty, between calls always
    calls = "\n".join(_tool_call_text(call) for call in message.get("tool_calls") or [])
    return head + ("\n" if calls and answer else "") + calls + "<|im_end|>\n"


def _tool_call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or call
    arguments = function["arguments"]
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return f'<tool_call>\n{{"name": "{function["name"]}", "arguments": {arguments}}}\n</tool_call>'

