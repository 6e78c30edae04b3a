"""Judge LLM, the parts that need no model: strict verdict parsing on hand-made replies, what the judge is
shown, the persistent cache, and bounded retries against a loopback port where nothing listens.
(End to end against vLLM's real OpenAI server: test_rewards_judge_vllm.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards import WeightedRewards, build_spec
from rewards.judge import (
    TEMPLATES,
    JudgeReward,
    VerdictCache,
    VerdictError,
    final_answer,
    parse_verdict,
    render,
)
from rewards.settings import JudgeSettings
from rewards.vllm_server import free_port

YES_NO = [
    ("Yes", 1.0), ("No", 0.0), ("The two answers agree.\nYes", 1.0), ("**Yes**", 1.0), ("Verdict: No.", 0.0),
    ("Final answer: yes", 1.0), ("<think>They differ, so No?</think>\n\nYes", 1.0), ("no.\n\n", 0.0),
]
GARBLED_YES_NO = ["", "Maybe", "Yes, I think so", "Yes or No", "No\nPerhaps yes", "<think>Yes", "\n\n\n", "Y",
                  "The answer is Yes"]
ABC = [("\\boxed{A}", 1.0), ("It is wrong: \\boxed{B}", 0.0), ("\\boxed{ c }", 0.0), ("\\boxed{A} ... \\boxed{A}", 1.0)]
GARBLED_ABC = ["A", "\\boxed{A} or \\boxed{B}", "\\boxed{D}", "\\boxed{AB}", "<think>\\boxed{A}"]


@pytest.mark.parametrize("reply,score", YES_NO)
def test_yes_no_verdicts(reply: str, score: float) -> None:
    assert parse_verdict(reply, "yes_no") == score


@pytest.mark.parametrize("reply", GARBLED_YES_NO)
def test_garbled_yes_no_is_an_error(reply: str) -> None:
    with pytest.raises(VerdictError):
        parse_verdict(reply, "yes_no")


@pytest.mark.parametrize("reply,score", ABC)
def test_abc_verdicts(reply: str, score: float) -> None:
    assert parse_verdict(reply, "abc") == score


@pytest.mark.parametrize("reply", GARBLED_ABC)
def test_garbled_abc_is_an_error(reply: str) -> None:
    with pytest.raises(VerdictError):
        parse_verdict(reply, "abc")


def test_the_judge_sees_the_final_answer_not_the_reasoning() -> None:
    text = "<think>Let me try \\boxed{3} first... no.</think>So the result is \\boxed{\\frac{1}{2}}."
    assert final_answer(text, "boxed", 100) == "\\frac{1}{2}"
    assert final_answer(text, "after_think", 100) == "So the result is \\boxed{\\frac{1}{2}}."
    assert final_answer(text, "after_think", 6) == "}{2}}."  # the last 6 characters
    assert final_answer("<think>never finished \\boxed{3}", "boxed", 100) is None
    assert final_answer("no box at all", "boxed", 100) is None
    opened = "<|im_start|>assistant\n<think>\n"  # the template opened <think>: no </think> means no answer
    assert final_answer("reasoning \\boxed{3}", "boxed", 100, rendered_prompt=opened) is None
    assert final_answer("reasoning</think>\\boxed{3}", "boxed", 100, rendered_prompt=opened) == "3"
    prompt = render(TEMPLATES["yes_no"], "Half of {1}?", "\\frac{1}{2}", "0.5")
    assert "Half of {1}?" in prompt and "\\frac{1}{2}" in prompt and "0.5" in prompt and "{answer}" not in prompt


def test_cache_persists_in_sqlite_and_keys_on_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "judge.sqlite")
    key = VerdictCache.key("judge-m", "v1:yes_no:abc", "q", "ref", "ans")
    VerdictCache(path).put(key, 1.0, "Yes", "judge-m", "v1:yes_no:abc")
    assert VerdictCache(path).get(key) == 1.0  # a new process / run sees it
    for other in [("judge-2", "v1:yes_no:abc", "q", "ref", "ans"), ("judge-m", "v2:yes_no:abc", "q", "ref", "ans"),
                  ("judge-m", "v1:yes_no:abc", "q2", "ref", "ans"), ("judge-m", "v1:yes_no:abc", "q", "ref2", "ans"),
                  ("judge-m", "v1:yes_no:abc", "q", "ref", "ans2")]:
        assert VerdictCache(path).get(VerdictCache.key(*other)) is None
    memory = VerdictCache(None)
    memory.put(key, 0.0, "No", "m", "t")
    assert memory.get(key) == 0.0


def test_a_custom_template_changes_the_cache_key() -> None:
    a = JudgeReward(JudgeSettings(base_url="http://127.0.0.1:9/v1", model="m"))
    b = JudgeReward(JudgeSettings(base_url="http://127.0.0.1:9/v1", model="m",
                                  template="Q: {question}\nR: {reference}\nA: {answer}\nYes or No?"))
    assert a.template_id != b.template_id and a.template_id.startswith("v1:yes_no:")
    with pytest.raises(ValueError, match=r"lacks \{reference\}"):
        JudgeSettings(base_url="http://h/v1", model="m", template="{question} {answer}")


def test_server_down_is_an_error_after_bounded_retries() -> None:
    port = free_port()  # nothing listens there
    spec = build_spec(judge=JudgeSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2,
                                          backoff_s=0.01, timeout_s=5))
    totals, metrics = WeightedRewards([spec])(["What is 2 + 2?"], ["\\boxed{4}"], {"answer": ["4"]})
    # unscored (None), never 0: a grader outage must not read as a wrong answer
    assert totals == [None] and metrics["reward/judge/errors"] == 1 and metrics["reward/judge/none_rate"] == 1.0
    assert spec.func.requests == 3  # the first try and two retries, then it gives up


def test_a_judge_that_never_answers_costs_one_wave_of_timeouts() -> None:
    import socket
    import time

    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        spec = build_spec(judge=JudgeSettings(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/v1", model="m",
                                              max_retries=1, backoff_s=0.01, timeout_s=0.5, max_concurrency=2))
        n = 24
        start = time.perf_counter()
        totals, metrics = WeightedRewards([spec])(["q"] * n, [f"\\boxed{{{i}}}" for i in range(n)],
                                                  {"answer": ["4"] * n})
        elapsed = time.perf_counter() - start
    finally:
        silent.close()
    assert totals == [None] * n and metrics["reward/judge/errors"] == n and metrics["reward/unscored_frac"] == 1.0
    # 2 requests in a row unreachable (down_after = max_concurrency) → the rest fail at once, not n × 2 × 0.5 s
    assert spec.func.requests <= 3 * 2 and elapsed < 6, (spec.func.requests, elapsed)


def test_rows_without_reference_or_answer_make_no_request() -> None:
    judge = JudgeReward(JudgeSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0))
    spec = build_spec(judge=judge.s)
    totals, metrics = WeightedRewards([spec])(["q", "q", "q"], ["\\boxed{4}", "no box", "<think>\\boxed{4}"],
                                              {"answer": [None, "4", "4"]})
    assert totals == [0.0, 0.0, 0.0] and metrics["reward/judge/none_rate"] == pytest.approx(1 / 3)
    assert metrics["reward/judge/errors"] == 0 and spec.func.requests == 0
