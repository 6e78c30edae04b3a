"""Each built-in reward on hand-made cases: math, code, format (chat-template aware), overlong, length.

The format reward is checked with the repository's thinking-fusion template and, where it exists beside the
repository (../shared/reference; not ours to copy in), with Qwen3's official template.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards import BUILTINS, Failed, RewardSpec, WeightedRewards, build_spec, call_reward
from rewards.text import last_boxed, think_mode
from rl.chat import THINKING_FUSION_TEMPLATE

QWEN3_TEMPLATE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "qwen3_chat_template.jinja"


def _reward(name: str, prompts: list, completions: list, **columns) -> list:
    """Call a built-in as the driver does (keyword arguments, options from the config's kwargs)."""
    return BUILTINS[name](prompts=prompts, completions=completions, **columns)


# ---------------------------------------------------------------------------------------------------- math
def test_math_grades_against_the_configured_reference_column() -> None:
    completions = ["<think>2+2</think> The answer is \\boxed{4}.", "\\boxed{x = 4.0}", "\\boxed{5}",
                   "I think it is 4", "\\boxed{4}", [{"role": "assistant", "content": "\\boxed{0.5}"}]]
    prompts = ["What is 2 + 2?"] * 5 + [[{"role": "user", "content": "Half of one?"}]]
    refs = ["4", "4", "4", "4", None, "\\frac{1}{2}"]
    got = _reward("math", prompts, completions, solution=refs, reference_column="solution")
    assert got == [1.0, 1.0, 0.0, 0.0, None, 1.0]  # no box → 0 (no_answer); no reference → not applicable
    assert _reward("math", prompts[:1], ["I think it is 4"], answer=["4"], extract=["boxed", "last_number"]) == [1.0]
    assert _reward("math", prompts[:1], ["\\boxed{2 + 2}"], answer=["4"]) == [0.0]  # restates the question


def test_math_infrastructure_outcomes_are_errors_not_rewards() -> None:
    huge = "\\boxed{" + "1" * 2000 + "}"  # over max_answer_chars: the verifier says parse_error
    got = _reward("math", ["q"], [huge], answer=["1"])
    assert isinstance(got[0], Failed) and "parse_error" in got[0].reason
    totals, metrics = WeightedRewards([build_spec(name="math")])(["q", "q"], [huge, "\\boxed{1}"], {"answer": ["1", "1"]})
    assert totals == [None, 1.0] and metrics["reward/math/errors"] == 1 and metrics["reward/math/mean"] == 1.0


# ---------------------------------------------------------------------------------------------------- code
def test_code_runs_the_rows_tests_in_the_sandbox() -> None:
    tests = {"stdin_stdout": [{"input": "1\n", "output": "2\n"}, {"input": "41\n", "output": "42\n"}]}
    completions = ["```python\nprint(int(input()) + 1)\n```", "```python\nprint(2)\n```", "no code here"]
    got = _reward("code", ["add one"] * 3, completions + [], tests=[tests, json.dumps(tests), None])
    assert got == [1.0, 0.0, None]
    fraction = _reward("code", ["add one"], completions[1:2], tests=[tests], scoring="fraction")
    assert fraction == [0.5]


# ---------------------------------------------------------------------------------------------------- format
def test_think_mode_reads_what_the_template_wrote() -> None:
    assert think_mode("<|im_start|>assistant\n") == "write"
    assert think_mode("<|im_start|>assistant\n<think>\n") == "open"
    assert think_mode("<|im_start|>assistant\n<think>\n\n</think>\n\n") == "closed"
    assert think_mode("<think>old</think>past answer<|im_end|>\n<|im_start|>assistant\n") == "write"


def test_format_follows_the_rendered_prompt() -> None:
    completions = ["<think>add them</think>The answer is 4.", "add them</think>The answer is 4.",
                   "The answer is 4.", "<think>add them</think>", "<think>a</think>b<think>c</think>d"]
    rendered = {"write": "<|im_start|>assistant\n", "open": "<|im_start|>assistant\n<think>\n",
                "closed": "<|im_start|>assistant\n<think>\n\n</think>\n\n"}
    expected = {"write": [1.0, 0.0, 0.0, 0.0, 0.0], "open": [0.0, 1.0, 0.0, 0.0, 0.0],
                "closed": [0.0, 0.0, 1.0, 0.0, 0.0]}
    for mode, text in rendered.items():
        got = _reward("format", ["q"] * 5, completions, rendered_prompt=[text] * 5)
        assert got == expected[mode], mode
        assert _reward("format", ["q"] * 5, completions, think=mode) == expected[mode]
    # TRL's standard format without the driver: a string prompt is the rendered text itself
    assert _reward("format", [rendered["open"]], ["x</think>y"]) == [1.0]
    boxed = _reward("format", ["q", "q"], ["<think>r</think>\\boxed{4}", "<think>r</think>4"], answer_regex=r"\\boxed\{")
    assert boxed == [1.0, 0.0]


def test_format_with_the_thinking_fusion_template(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    render = lambda **kw: tok.apply_chat_template(  # noqa: E731
        messages, chat_template=THINKING_FUSION_TEMPLATE, tokenize=False, add_generation_prompt=True, **kw)
    off, on = render(enable_thinking=False), render()
    assert think_mode(off) == "closed" and think_mode(on) == "open"
    # thinking off: the empty think block is pre-filled, so a plain answer is the right format
    assert _reward("format", [messages], ["The answer is 4."], rendered_prompt=[off]) == [1.0]
    assert _reward("format", [messages], ["hm\n</think>\n\n4"], rendered_prompt=[on]) == [1.0]
    assert _reward("format", [messages], ["<think>\nhm\n</think>\n\n4"], rendered_prompt=[on]) == [0.0]


@pytest.mark.skipif(
    not QWEN3_TEMPLATE.is_file(),
    reason="../shared/reference/qwen3_chat_template.jinja not present (the official Qwen3 template is not ours "
    "to copy into the repository)",
)
def test_format_with_qwen3s_real_template(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    template = QWEN3_TEMPLATE.read_text()
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    off = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True,
                                  enable_thinking=False)
    on = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    assert think_mode(off) == "closed" and think_mode(on) == "write"
    # thinking off: Qwen3 pre-filled the empty think block, so a plain answer is the right format
    assert _reward("format", [messages], ["The answer is 4."], rendered_prompt=[off]) == [1.0]
    assert _reward("format", [messages], ["<think>\nhm\n</think>\n\n4"], rendered_prompt=[on]) == [1.0]


# ---------------------------------------------------------------------------------------------------- overlong
def test_overlong_is_the_dapo_soft_penalty() -> None:
    ids = [[0] * n for n in (5, 6, 8, 10, 12)]  # max_length 10, buffer 4: free up to 6, −1 at 10
    assert _reward("overlong", ["q"] * 5, ["c"] * 5, completion_ids=ids, max_length=10, buffer=4) == [
        0.0, 0.0, -0.5, -1.0, -1.0]
    # default: the run's max_new_tokens (the driver passes max_completion_tokens), buffer a fifth of it
    assert _reward("overlong", ["q"] * 2, ["c"] * 2, completion_ids=[[0] * 16, [0] * 18],
                   max_completion_tokens=20) == [0.0, -0.5]
    with pytest.raises(ValueError, match="needs `max_length`"):
        _reward("overlong", ["q"], ["c"], completion_ids=[[0]])


# ---------------------------------------------------------------------------------------------------- length
def test_length_rewards_closeness_to_the_target() -> None:
    ids = [[0] * n for n in (10, 5, 25, 12)]
    assert _reward("length", ["q"] * 4, ["c"] * 4, completion_ids=ids, target=10) == [1.0, 0.5, 0.0, 0.8]
    assert _reward("length", ["q"] * 4, ["c"] * 4, completion_ids=ids, target=10, tolerance=2) == [1.0, 0.7, 0.0, 1.0]
    got = _reward("length", ["q"] * 3, ["one two three four", "one two", "x"], unit="words",
                  target_column="budget", budget=[4, 4, None])
    assert got == [1.0, 0.5, None]
    with pytest.raises(ValueError, match="exactly one of `target` or `target_column`"):
        build_spec(name="length", kwargs={"target": 3, "target_column": "b"}).func(
            prompts=["q"], completions=["c"], completion_ids=[[1]], target=3, target_column="b", b=[1])


# ---------------------------------------------------------------------------------------------------- helpers
def test_last_boxed_balances_braces() -> None:
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} and \\boxed{unclosed") == "1"
    assert last_boxed("no box") is None


def test_builtins_combine_in_one_weighted_sum() -> None:
    specs = [build_spec(name="math"), build_spec(name="format", weight=0.5),
             build_spec(name="overlong", kwargs={"max_length": 4, "buffer": 2})]
    columns = {"answer": ["4", "4"], "completion_ids": [[1, 2], [1, 2, 3, 4]], "step": 1,
               "rendered_prompt": ["<|im_start|>assistant\n"] * 2}
    totals, metrics = WeightedRewards(specs)(["q", "q"], ["<think>r</think>\\boxed{4}", "\\boxed{3}"], columns)
    assert totals == [1.0 + 0.5, 0.0 + 0.0 - 1.0]
    assert metrics["reward/format/mean"] == 0.5 and metrics["reward/overlong/mean"] == -0.5


def test_call_reward_on_a_spec_function() -> None:
    assert call_reward(RewardSpec("m", BUILTINS["boxed_int"]).func, ["q"], ["\\boxed{7}"], {"answer": [7]}) == [1.0]
