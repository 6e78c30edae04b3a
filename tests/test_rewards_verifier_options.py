"""The verifiers' options reach them through the built-in rewards' config (`rewards: [{name, kwargs}]`): math's
`boxes`, code's `compare` / `case_insensitive` / `float_tol` / `checker`. Each test shows that the option changes
the reward, and that a misspelt or invalid option is a config error naming the key before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards import Failed, RewardConfig, WeightedRewards, call_reward, from_config
from rl.config import GRPOConfig
from rl.config_io import load_config


def _reward(name: str, kwargs: dict, rows: list[dict]) -> WeightedRewards:
    """The reward a config entry `{name, kwargs}` builds, checked against `rows` as a run checks its data."""
    return from_config([RewardConfig(name=name, kwargs=kwargs)], [rows])


def _scores(name: str, kwargs: dict, completions: list, column: str, values: list) -> list:
    rows = [{"prompt": "q", column: v} for v in values]
    spec = _reward(name, kwargs, rows).specs[0]
    return call_reward(spec.func, ["q"] * len(completions), completions, {column: values, **spec.kwargs})


def _stdio(*pairs: tuple[str, str]) -> dict:
    return {"stdin_stdout": [{"input": i, "output": o} for i, o in pairs]}


def _program(source: str) -> str:
    return f"```python\n{source}\n```"


# ---------------------------------------------------------------------------------------------------- math
def test_math_boxes_each_part_grades_several_boxes_as_one_list_answer() -> None:
    completions = ["(a) \\boxed{3} (b) \\boxed{5}", "(a) \\boxed{5} (b) \\boxed{3}", "\\boxed{3, 5}"]
    refs = ["3, 5"] * 3
    assert _scores("math", {}, completions, "answer", refs) == [0.0, 0.0, 1.0]  # several boxes: a hedge
    assert _scores("math", {"boxes": "each_part"}, completions, "answer", refs) == [1.0, 1.0, 1.0]
    # each box is one part: two boxes are not a single value, even when one of them is right
    assert _scores("math", {"boxes": "each_part"}, ["\\boxed{3} or \\boxed{4}"], "answer", ["3"]) == [0.0]


# ---------------------------------------------------------------------------------------------------- code
def test_code_case_insensitive_accepts_yes_for_yes() -> None:
    completions = [_program("print('YES')")]
    tests = [_stdio(("", "yes\n"))]
    assert _scores("code", {}, completions, "tests", tests) == [0.0]
    assert _scores("code", {"case_insensitive": True}, completions, "tests", tests) == [1.0]


def test_code_compare_tokens_ignores_the_layout_and_exact_counts_every_byte() -> None:
    completions = [_program("print(1, 2, 3)"), _program("print('1 2 3  ')")]
    tests = [_stdio(("", "1\n2\n3\n"))] * 2
    assert _scores("code", {}, completions, "tests", tests) == [0.0, 0.0]
    assert _scores("code", {"compare": "tokens"}, completions, "tests", tests) == [1.0, 1.0]
    trailing = [_stdio(("", "1 2 3\n"))] * 2
    assert _scores("code", {}, completions, "tests", trailing) == [1.0, 1.0]  # lines: trailing spaces ignored
    assert _scores("code", {"compare": "exact"}, completions, "tests", trailing) == [1.0, 0.0]


def test_code_float_tol_accepts_close_numbers_and_reads_yamls_1e_6() -> None:
    completions = [_program("print(1 / 3)"), _program("print(0.3334)")]
    tests = [_stdio(("", "0.333333333\n"))] * 2
    assert _scores("code", {}, completions, "tests", tests) == [0.0, 0.0]
    # YAML reads `1e-6` (no dot) as a string; the option is a number all the same
    assert _scores("code", {"float_tol": "1e-6"}, completions, "tests", tests) == [1.0, 0.0]


def _checker_file(tmp_path: Path) -> Path:
    path = tmp_path / "divisor_checker.py"
    path.write_text(
        "def any_divisor(stdin, stdout, expected):\n"
        "    n, d = int(stdin), int(stdout)\n"
        "    return 1 < d <= n and n % d == 0\n"
        "def broken(stdin, stdout, expected):\n"
        "    raise RuntimeError('bug in the checker')\n"
        "def two_args(stdin, stdout):\n"
        "    return True\n"
    )
    return path


def test_code_checker_from_a_file_accepts_any_valid_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _checker_file(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative file, as configs write them
    completions = [_program("n = int(input())\nprint(n)"), _program("print(1)"), _program("print(2)")]
    tests = [_stdio(("12\n", "2\n"), ("9\n", "3\n"))] * 3  # "print a divisor > 1"; expected: the smallest
    assert _scores("code", {}, completions, "tests", tests) == [0.0, 0.0, 0.0]
    spec = _reward("code", {"checker": "divisor_checker.py:any_divisor"}, [{"prompt": "q", "tests": tests[0]}])
    spec = spec.specs[0]
    assert spec.kwargs["checker"] == f"{tmp_path / 'divisor_checker.py'}:any_divisor"  # for Ray workers' cwd
    got = call_reward(spec.func, ["q"] * 3, completions, {"tests": tests, **spec.kwargs})
    assert got == [1.0, 0.0, 0.0]  # n divides n; 1 is not > 1; 2 does not divide 9


def test_code_checker_from_a_module_and_a_broken_checker_is_not_a_reward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _checker_file(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    tests = [_stdio(("12\n", "2\n"))]
    spec = _reward("code", {"checker": "divisor_checker:any_divisor"}, [{"prompt": "q", "tests": tests[0]}])
    spec = spec.specs[0]
    assert call_reward(spec.func, ["q"], [_program("print(4)")], {"tests": tests, **spec.kwargs}) == [1.0]
    broken = _reward("code", {"checker": "divisor_checker:broken"}, [{"prompt": "q", "tests": tests[0]}])
    totals, metrics = broken(["q"], [_program("print(4)")], {"tests": tests})
    assert totals == [None] and metrics["reward/code/errors"] == 1
    spec = broken.specs[0]
    (got,) = spec.func(prompts=["q"], completions=[_program("print(4)")], tests=tests, **spec.kwargs)
    assert isinstance(got, Failed) and "RuntimeError: bug in the checker" in got.reason


CHECKS = "divisor_checker.py"  # written by _checker_file in the test's tmp_path (the working directory)
BAD_OPTIONS = [
    ({"case_insenstive": True}, "has no option 'case_insenstive' — did you mean 'case_insensitive'?"),
    ({"compare": "line"}, "option compare='line': Input should be 'lines', 'tokens' or 'exact'"),
    ({"float_tol": 2}, "option float_tol=2: Input should be less than 1"),
    ({"checker": "no_such_file.py:f"}, "option checker='no_such_file.py:f': checker .* file .* not found"),
    ({"checker": "no_colon"}, "option checker='no_colon': checker 'no_colon' must look like `package.module:function`"),
    ({"checker": f"{CHECKS}:nothing"}, f"option checker='{CHECKS}:nothing': checker .* has no function 'nothing'"),
    ({"checker": f"{CHECKS}:two_args"}, "option checker=.*: checker .* must accept \\(input, output, expected\\)"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_OPTIONS, ids=[str(k) for k, _ in BAD_OPTIONS])
def test_code_option_values_are_checked_before_any_model_loads(
    kwargs: dict, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _checker_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"^rewards.0: reward 'code' {message}"):
        _reward("code", kwargs, [{"prompt": "q", "tests": _stdio(("", "1\n"))}])


def test_a_misspelt_option_stops_the_run_in_preflight(make_config) -> None:
    from rl.grpo import preflight

    path = make_config()
    with pytest.raises(ValueError, match="rewards.0: reward 'math' has no option 'boxs' — did you mean 'boxes'?"):
        preflight(load_config(GRPOConfig, path, ["rewards=[{name: math, kwargs: {boxs: each_part}}]"]))
    with pytest.raises(ValueError, match="rewards.0: reward 'math' option boxes='each': Input should be 'one' or"):
        preflight(load_config(GRPOConfig, path, ["rewards=[{name: math, kwargs: {boxes: each}}]"]))
    inputs = preflight(load_config(GRPOConfig, path, ["rewards=[{name: math, kwargs: {boxes: each_part}}]"]))
    assert inputs.rewards.specs[0].kwargs == {"boxes": "each_part"}

