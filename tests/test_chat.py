"""rl.chat: renderings equal Qwen3's official template (rendered by transformers' jinja machinery), the
thinking-fusion template agrees with `render`, and the mode rules (flags, latest wins, hard switch); with tools
(schemas and functions), assistant tool calls (dict / JSON-string arguments, OpenAI and flat format) and `tool`
messages too, and `tool_turn_text` splits a tool-using conversation consistently.

The official template is not ours to copy into the repository: the test that compares against it reads it from
../shared/reference beside the repository and is skipped where it is absent. Every other test uses the
repository's own templates (`THINKING_FUSION_TEMPLATE`, and `QWEN3_STYLE_TEMPLATE` below).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from rl.chat import (
    EMPTY_THINK_BLOCK,
    THINKING_FUSION_TEMPLATE,
    chat_style,
    render,
    render_text,
    split_reasoning,
    thinking_enabled,
    tool_turn_text,
    use_thinking_template,
)
from rl.tools import calculator

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "qwen3_chat_template.jinja"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_file(),
    reason="../shared/reference/qwen3_chat_template.jinja not present (the official Qwen3 template is not ours "
    "to copy into the repository)",
)

# Our own Qwen3-style (hybrid thinking) template: the fusion template's turns with Qwen3's generation prompt,
# which pre-fills the empty think block only under the hard switch `enable_thinking=False` (the model itself
# reads the flags). `chat_style` detects it as "qwen3"; test_qwen3_style_template_agrees_with_render checks it.
_FUSION_PROMPT = "('<think>\\n' if ns.thinking else '<think>\\n\\n</think>\\n\\n')"
_QWEN3_PROMPT = "('<think>\\n\\n</think>\\n\\n' if enable_thinking is defined and enable_thinking is false else '')"
assert THINKING_FUSION_TEMPLATE.count(_FUSION_PROMPT) == 1
QWEN3_STYLE_TEMPLATE = THINKING_FUSION_TEMPLATE.replace(
    "rl.chat thinking-fusion template", "tests: Qwen3-style hybrid thinking template"
).replace(_FUSION_PROMPT, _QWEN3_PROMPT)

SYS = {"role": "system", "content": "You are a careful assistant."}
Q1 = {"role": "user", "content": "What is 2 + 3?"}
Q2 = {"role": "user", "content": "And 4 + 5?"}
A_INLINE = {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is 5."}
A_FIELD = {"role": "assistant", "content": "The answer is 5.", "reasoning_content": "\n2 plus 3 is 5.\n"}
A_EMPTY_BLOCK = {"role": "assistant", "content": "<think>\n\n</think>\n\nThe answer is 5."}
A_PLAIN = {"role": "assistant", "content": "The answer is 5."}
A_FINAL = {"role": "assistant", "content": "<think>\nadd\n\n</think>\n\n\nIt is 9."}
TOOL_LIKE = {"role": "user", "content": "<tool_response>\n9\n</tool_response>"}

# (name, messages, add_generation_prompt): single/multi-turn, reasoning inline / in `reasoning_content` / none,
# flags in user and system turns, finished conversations (SFT targets), turns after the last query.
CONVERSATIONS = [
    ("single", [Q1], True),
    ("system_single", [SYS, Q1], True),
    ("no_think_flag", [{"role": "user", "content": "What is 2 + 3? /no_think"}], True),
    ("system_flag", [{"role": "system", "content": "Be brief. /no_think"}, Q1], True),
    ("multi_inline_reasoning_dropped", [SYS, Q1, A_INLINE, Q2], True),
    ("multi_field_reasoning_dropped", [Q1, A_FIELD, Q2], True),
    ("multi_plain_history", [Q1, A_PLAIN, Q2], True),
    ("flags_switch", [{"role": "user", "content": "2 + 3? /no_think"}, A_EMPTY_BLOCK,
                      {"role": "user", "content": "Now think: 4 + 5? /think"}], True),
    ("flag_then_plain", [{"role": "user", "content": "/no_think 2 + 3?"}, A_PLAIN, Q2], True),
    ("final_turn_with_reasoning", [SYS, Q1, A_INLINE, Q2, A_FINAL], False),
    ("final_turn_without_reasoning", [Q1, A_PLAIN], False),
    ("final_turn_reasoning_field", [Q1, A_FIELD], False),
    ("turns_after_last_query", [Q1, A_INLINE, TOOL_LIKE, A_FINAL], False),
    ("plain_turn_after_last_query", [Q1, A_PLAIN, TOOL_LIKE], True),
    ("system_mid_conversation", [Q1, A_INLINE, {"role": "system", "content": "/no_think"}, Q2], True),
    ("no_user_turn", [SYS, A_FINAL], False),
]
MODES = [None, True, False]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current temperature in °C of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}},
                   "required": ["city"]}}}
TOOLS = [WEATHER, calculator]  # a schema and a function (described by transformers' get_json_schema)


def call(name: str, arguments, *, flat: bool = False) -> dict:
    function = {"name": name, "arguments": arguments}
    return function if flat else {"type": "function", "function": function}


ASK = {"role": "user", "content": "Is Zürich warmer than 3 * 7 °C?"}
A_CALL = {"role": "assistant", "content": "<think>\nI need the weather.\n</think>\n\n",
          "tool_calls": [call("get_weather", {"city": "Zürich"})]}
A_CALL_EMPTY = {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Zürich"})]}
A_TWO_CALLS = {"role": "assistant", "content": "Checking both.", "reasoning_content": "\nweather and maths\n",
               "tool_calls": [call("get_weather", '{"city": "Zürich"}', flat=True),
                              call("calculator", {"expression": "3 * 7"})]}
A_FIELD_NEWLINE = {"role": "assistant", "content": "\n", "reasoning_content": "r",
                   "tool_calls": [call("calculator", '{"expression": "3 * 7"}')]}
T_WEATHER = {"role": "tool", "name": "get_weather", "content": '{"temperature": 18}'}
T_CALC = {"role": "tool", "name": "calculator", "content": "21"}
A_DONE = {"role": "assistant", "content": "<think>\n18 < 21\n</think>\n\nNo, it is colder."}

# (name, messages, add_generation_prompt, tools)
TOOL_CONVERSATIONS = [
    ("tools_system_prompt", [SYS, ASK], True, TOOLS),
    ("tools_no_system", [ASK], True, TOOLS),
    ("tools_no_think_flag", [{"role": "system", "content": "Be brief. /no_think"}, ASK], True, TOOLS),
    ("call_then_response", [SYS, ASK, A_CALL, T_WEATHER], True, TOOLS),
    ("call_without_reasoning", [ASK, A_CALL_EMPTY, T_WEATHER], True, TOOLS),
    ("two_calls_grouped_responses", [ASK, A_TWO_CALLS, T_WEATHER, T_CALC], True, TOOLS),
    ("reasoning_field_newline_content", [ASK, A_FIELD_NEWLINE, T_CALC], True, TOOLS),
    ("multi_step_finished", [SYS, ASK, A_CALL, T_WEATHER, A_TWO_CALLS, T_WEATHER, T_CALC, A_DONE], False, TOOLS),
    ("call_is_last_turn", [ASK, A_CALL], False, TOOLS),
    ("history_then_new_query", [ASK, A_CALL, T_WEATHER, A_DONE, Q2], True, TOOLS),
    ("tool_messages_without_tools", [ASK, A_TWO_CALLS, T_WEATHER, T_CALC], True, None),
]
CASES = [(name, messages, gen, None) for name, messages, gen in CONVERSATIONS] + TOOL_CONVERSATIONS
CASE_IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _jinja(tokenizer, template: str, messages, add_generation_prompt: bool, enable_thinking: bool | None,
           tools=None) -> str:
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(copy.deepcopy(messages), tokenize=False, chat_template=template, tools=tools,
                                         add_generation_prompt=add_generation_prompt, **kwargs)


def _with_template(tokenizer, template: str):
    tok = copy.copy(tokenizer)
    tok.chat_template = template
    return tok


@needs_official
@pytest.mark.parametrize("enable_thinking", MODES)
@pytest.mark.parametrize(("name", "messages", "gen", "tools"), CASES, ids=CASE_IDS)
def test_qwen3_style_equals_official_template(tokenizer, name, messages, gen, tools, enable_thinking) -> None:
    official = OFFICIAL.read_text()
    qwen3_tok = _with_template(tokenizer, official)
    assert chat_style(qwen3_tok) == "qwen3"
    ours = render(messages, qwen3_tok, tools=tools, enable_thinking=enable_thinking, add_generation_prompt=gen)
    assert ours == _jinja(tokenizer, official, messages, gen, enable_thinking, tools)


@pytest.mark.parametrize("enable_thinking", MODES)
@pytest.mark.parametrize(("name", "messages", "gen", "tools"), CASES, ids=CASE_IDS)
def test_qwen3_style_template_agrees_with_render(tokenizer, name, messages, gen, tools, enable_thinking) -> None:
    qwen3_tok = _with_template(tokenizer, QWEN3_STYLE_TEMPLATE)
    assert chat_style(qwen3_tok) == "qwen3"
    ours = render(messages, qwen3_tok, tools=tools, enable_thinking=enable_thinking, add_generation_prompt=gen)
    assert ours == _jinja(tokenizer, QWEN3_STYLE_TEMPLATE, messages, gen, enable_thinking, tools)


@pytest.mark.parametrize("enable_thinking", MODES)
@pytest.mark.parametrize(("name", "messages", "gen", "tools"), CASES, ids=CASE_IDS)
def test_fusion_template_agrees_with_render(tokenizer, name, messages, gen, tools, enable_thinking) -> None:
    fusion_tok = use_thinking_template(copy.copy(tokenizer))
    assert chat_style(fusion_tok) == "fusion"
    ours = render(messages, fusion_tok, tools=tools, enable_thinking=enable_thinking, add_generation_prompt=gen)
    assert ours == _jinja(tokenizer, THINKING_FUSION_TEMPLATE, messages, gen, enable_thinking, tools)


@pytest.mark.parametrize("enable_thinking", MODES)
@pytest.mark.parametrize(("name", "messages", "gen", "tools"), CASES, ids=CASE_IDS)
def test_fusion_is_qwen3_with_the_resolved_mode_prefilled(tokenizer, name, messages, gen, tools,
                                                           enable_thinking) -> None:
    """Fusion = Qwen3's turns; only the generation prompt differs: `<think>\\n` opened when thinking, the
    empty block (Qwen3's own `enable_thinking=False` text) when not. Compared with the qwen3 style, which
    test_qwen3_style_equals_official_template compares with the official template."""
    fusion = render(messages, use_thinking_template(copy.copy(tokenizer)), tools=tools,
                    enable_thinking=enable_thinking, add_generation_prompt=gen)
    if not gen:
        assert fusion == render_text(messages, "qwen3", tools=tools, enable_thinking=enable_thinking,
                                     add_generation_prompt=gen)
    elif thinking_enabled(messages, enable_thinking):
        assert fusion == render_text(messages, "qwen3", tools=tools, enable_thinking=None) + "<think>\n"
    else:
        assert fusion == render_text(messages, "qwen3", tools=tools, enable_thinking=False)


def test_reasoning_of_earlier_turns_is_dropped_and_final_turn_keeps_its_block(tokenizer) -> None:
    qwen3_tok = _with_template(tokenizer, QWEN3_STYLE_TEMPLATE)
    text = render([Q1, A_INLINE, Q2], qwen3_tok)
    assert "2 plus 3" not in text and "<|im_start|>assistant\nThe answer is 5.<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    final = render([Q1, A_FIELD], qwen3_tok, add_generation_prompt=False)
    assert final.endswith("<|im_start|>assistant\n<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is 5.<|im_end|>\n")
    plain = render([Q1, A_PLAIN], qwen3_tok, add_generation_prompt=False)
    assert plain.endswith("<|im_start|>assistant\n" + EMPTY_THINK_BLOCK + "The answer is 5.<|im_end|>\n")


def test_enable_thinking_false_prefills_the_empty_block(tokenizer) -> None:
    for template in (QWEN3_STYLE_TEMPLATE, THINKING_FUSION_TEMPLATE):
        text = render([Q1], _with_template(tokenizer, template), enable_thinking=False)
        assert text.endswith("<|im_start|>assistant\n" + EMPTY_THINK_BLOCK)


def test_flags_latest_wins_and_thinking_is_the_default() -> None:
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    assert thinking_enabled([user("hi")]) is True
    assert thinking_enabled([user("hi /no_think")]) is False
    assert thinking_enabled([{"role": "system", "content": "/no_think"}, user("hi")]) is False
    assert thinking_enabled([user("hi /no_think"), A_PLAIN, user("again")]) is False  # a flag persists
    assert thinking_enabled([user("hi /no_think"), A_PLAIN, user("again /think")]) is True
    assert thinking_enabled([user("/think first, then /no_think")]) is False  # later in the same message
    assert thinking_enabled([user("/no_think first, then /think")]) is True
    assert thinking_enabled([{"role": "assistant", "content": "/no_think"}, user("hi")]) is True  # not a flag
    assert thinking_enabled([user("hi /think")], enable_thinking=False) is False  # the hard switch
    assert thinking_enabled([user("hi /no_think")], enable_thinking=True) is False  # True = flags decide


def test_fusion_generation_prompt_follows_the_latest_flag(tokenizer) -> None:
    tok = use_thinking_template(copy.copy(tokenizer))
    switch = [{"role": "user", "content": "2 + 3? /no_think"}, A_EMPTY_BLOCK, {"role": "user", "content": "4 + 5?"}]
    assert render(switch, tok).endswith("<|im_start|>assistant\n" + EMPTY_THINK_BLOCK)
    switch[-1] = {"role": "user", "content": "4 + 5? /think"}
    assert render(switch, tok).endswith("<|im_start|>assistant\n<think>\n")
    assert render(switch, tok, enable_thinking=False).endswith(EMPTY_THINK_BLOCK)


def test_split_reasoning() -> None:
    assert split_reasoning(A_INLINE) == ("2 plus 3 is 5.", "The answer is 5.")
    assert split_reasoning(A_FIELD) == ("\n2 plus 3 is 5.\n", "The answer is 5.")
    assert split_reasoning(A_PLAIN) == ("", "The answer is 5.")


def test_bad_input_is_a_clear_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="use_thinking_template"):
        render([Q1], tokenizer)  # the tiny model's plain ChatML template has no thinking modes
    tok = use_thinking_template(copy.copy(tokenizer))
    with pytest.raises(ValueError, match="role 'function'"):
        render([Q1, {"role": "function", "content": "9"}], tok)
    with pytest.raises(ValueError, match="only assistant messages"):
        render([{"role": "user", "content": "hi", "tool_calls": [call("f", {})]}], tok)
    with pytest.raises(ValueError, match="without a name and arguments"):
        render([Q1, {"role": "assistant", "content": "", "tool_calls": [call("f", 3)]}], tok)
    with pytest.raises(ValueError, match="get_json_schema"):
        render([Q1], tok, tools=[lambda x: x])
    with pytest.raises(ValueError, match="no tool responses"):
        tool_turn_text([], "qwen3")
    with pytest.raises(ValueError, match="string content"):
        render([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], tok)


def test_tools_render_into_the_system_turn_and_calls_as_blocks() -> None:
    text = render_text([SYS, ASK, A_TWO_CALLS, T_WEATHER, T_CALC], "qwen3", tools=TOOLS)
    assert text.startswith("<|im_start|>system\nYou are a careful assistant.\n\n# Tools\n")
    assert '"description": "Current temperature in °C of a city."' in text  # not ASCII-escaped, as tojson
    assert '"name": "calculator", "description": "Evaluate an arithmetic expression exactly."' in text
    assert ('Checking both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3 * 7"}}\n</tool_call><|im_end|>\n') in text
    assert text.endswith('<|im_start|>user\n<tool_response>\n{"temperature": 18}\n</tool_response>\n'
                         "<tool_response>\n21\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


# (name, conversation up to and with the assistant turn that calls tools, the tool messages that answer it)
SPLITS = [
    ("first_call", [SYS, ASK, A_CALL], [T_WEATHER]),
    ("two_calls", [ASK, A_TWO_CALLS], [T_WEATHER, T_CALC]),
    ("second_step", [SYS, ASK, A_CALL, T_WEATHER, A_TWO_CALLS], [T_WEATHER, T_CALC]),
    ("no_think_flag", [{"role": "user", "content": "Weather in Zürich? /no_think"}, A_CALL], [T_WEATHER]),
]


@pytest.mark.parametrize("enable_thinking", MODES)
@pytest.mark.parametrize("style", ["qwen3", "fusion"])
@pytest.mark.parametrize(("name", "before", "responses"), SPLITS, ids=[c[0] for c in SPLITS])
def test_tool_turn_text_continues_the_rendered_conversation(name, before, responses, style, enable_thinking) -> None:
    """Turn by turn (what a rollout appends) = the whole conversation rendered at once, with the next prompt."""
    rendered = render_text(before, style, tools=TOOLS, enable_thinking=enable_thinking, add_generation_prompt=False)
    assert rendered.endswith("<|im_end|>\n")
    turn = tool_turn_text([m["content"] for m in responses], style, enable_thinking=enable_thinking,
                          messages=before)
    assert turn.startswith("\n<|im_start|>user\n<tool_response>\n")
    full = render_text(before + responses, style, tools=TOOLS, enable_thinking=enable_thinking)
    assert rendered[:-1] + turn == full


def test_tool_turn_text_prefill_follows_the_mode() -> None:
    assert tool_turn_text(["21"], "qwen3") == ("\n<|im_start|>user\n<tool_response>\n21\n</tool_response><|im_end|>\n"
                                               "<|im_start|>assistant\n")
    assert tool_turn_text(["21"], "qwen3", enable_thinking=False).endswith("assistant\n" + EMPTY_THINK_BLOCK)
    assert tool_turn_text(["21"], "fusion", messages=[ASK]).endswith("assistant\n<think>\n")
    no_think = [{"role": "user", "content": "2 + 3? /no_think"}]
    assert tool_turn_text(["21"], "fusion", messages=no_think).endswith("assistant\n" + EMPTY_THINK_BLOCK)


def test_an_empty_think_block_is_kept_only_on_the_last_turn() -> None:
    """Why `tool_turn_text`'s equality needs reasoning in the calling turn: Qwen3's template drops an empty think
    block from a history turn, so a rollout's text (sampled tokens + tool turn) is not a re-rendering then."""
    rendered = render_text([ASK, A_CALL_EMPTY], "qwen3", tools=TOOLS, add_generation_prompt=False)
    full = render_text([ASK, A_CALL_EMPTY, T_WEATHER], "qwen3", tools=TOOLS)
    assert EMPTY_THINK_BLOCK in rendered and EMPTY_THINK_BLOCK not in full
    assert rendered[:-1] + tool_turn_text([T_WEATHER["content"]], "qwen3") != full
