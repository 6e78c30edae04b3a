"""verifiers.math against lines 17-18 of its grading policy (verifiers/README.md): hostile input, and what
is not a reward. Lines 1-16 are in test_verifiers_math.py."""

import pytest

from verifiers.math import verify
from verifiers.verdict import Verdict


def boxed(answer: str, reference: str, **options) -> Verdict:
    return verify(f"Some working first.\nSo the final answer is $\\boxed{{{answer}}}$.", reference, **options)


def assert_grade(v: Verdict, score: float, status: str = "ok") -> None:
    assert (v.score, v.status) == (score, status), v


# 17. Hostile input never raises or hangs: bounded before parsing (parse_error) or killed (timeout).
_JUNK = bytes((i * 7919 + 13) % 256 for i in range(5000)).decode("latin-1")


@pytest.mark.parametrize(
    "completion, reference, status",
    [
        ("\\boxed{" + "{" * 200 + "1" + "}" * 200 + "}", "1", "parse_error"),
        ("\\boxed{" + "(" * 100 + "1" + ")" * 100 + "}", "1", "parse_error"),
        ("\\boxed{" + "1+" * 50_000 + "1}", "50001", "parse_error"),
        (r"\boxed{10^{10^{10}}}", "10^{10}", "parse_error"),
        (r"\boxed{10^{10^{10}}+1}", "10^{10^{10}}", "parse_error"),
        (r"\boxed{9^{9^{9^{9}}}}", r"\pi", "parse_error"),
        (r"\boxed{2^{-10^{10}}}", "0.5", "parse_error"),
        (r"\boxed{10!!!!}", "3.5", "parse_error"),
        (r"\boxed{10^{10^{10}} = 5}", "5", "parse_error"),
        (r"\boxed{e^{10^{6}}}", r"\pi", "parse_error"),
        (r"\boxed{5", "5", "parse_error"),
        (r"\boxed{\frac{1}{2}", "0.5", "parse_error"),
        (r"\boxed{\}", "5", "parse_error"),
        ("\\boxed{\x00\x01}", "5", "parse_error"),
        ("\\boxed{\ufffd\ufffd}", "5", "parse_error"),
        ("\\boxed{" + _JUNK[:500] + "}", "5", "parse_error"),
        (_JUNK, "5", "no_answer"),
        (b"\\boxed{5}", "5", "parse_error"),
        (None, "5", "parse_error"),
        (r"\boxed{\left(\right.}", "x", "parse_error"),
    ],
)
def test_policy_17_hostile_input_is_bounded(completion, reference, status):
    v = verify(completion, reference, timeout=2.0)
    assert (v.score, v.status) == (0.0, status), v


def test_policy_17_long_completion_with_a_short_answer_is_fine():
    assert_grade(verify("x" * 100_000 + r" \boxed{5}", "5"), 1.0)
    assert_grade(verify(r"\boxed{" + "1" * 999 + "}", "1" * 999), 1.0)


def test_policy_17_limits_are_options():
    assert_grade(boxed("1+" * 20 + "1", "21.0", max_answer_chars=10), 0.0, "parse_error")
    assert_grade(boxed("((1))", "1", max_depth=1), 0.0, "parse_error")


def test_policy_17_a_comparison_that_runs_too_long_is_killed():
    v = boxed(r"\prod_{k=1}^{10^{7}} k", r"\pi", timeout=1.0)
    assert (v.score, v.status) == (0.0, "timeout"), v
    assert_grade(boxed("(x+1)^2", "x^2+2x+1"), 1.0)  # the pool recovered


# 18. Only `ok` and `no_answer` are rewards; unusable references are `error`; bad options are ValueError.
@pytest.mark.parametrize(
    "reference, score, status",
    [
        (5, 1.0, "ok"),
        (5.0, 1.0, "ok"),
        ("", 0.0, "error"),
        (r"\boxed{5", 0.0, "error"),
        ("5" * 20_000, 0.0, "error"),
        (None, 0.0, "error"),
        (["5"], 0.0, "error"),
    ],
)
def test_policy_18_unusable_reference_is_an_error(reference, score, status):
    assert_grade(verify(r"\boxed{5}", reference), score, status)


@pytest.mark.parametrize(
    "options", [{"timeout": 0}, {"rel_tol": -1.0}, {"rel_tol": 1.0}, {"max_answer_chars": 0}, {"max_depth": 0}]
)
def test_policy_18_bad_options_are_value_errors(options):
    with pytest.raises(ValueError):
        verify(r"\boxed{5}", "5", **options)


@pytest.mark.parametrize(
    "completion, reference, is_reward",
    [
        (r"\boxed{5}", "5", True),
        (r"\boxed{6}", "5", True),
        ("no box", "5", True),
        (r"\boxed{5", "5", False),
        (r"\boxed{5}", "", False),
    ],
)
def test_policy_18_only_ok_and_no_answer_are_rewards(completion, reference, is_reward):
    assert verify(completion, reference).is_reward is is_reward
