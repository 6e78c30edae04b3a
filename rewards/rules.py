"""Rule-based built-in rewards: `math`, `code`, `format`, `overlong`, `length`.

Each is a plain function under the contract; its keyword-only parameters are the options a config sets in
`kwargs:`, checked before any model loads: by name, and by value against their annotations (pydantic, in
`rewards.base`); options ending in `_column` name the dataset column read. Verifier outcomes that are not
rewards (parse_error, timeout, error) come back as `Failed`, never as a score.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from rewards.contract import Failed
from rewards.text import after_thinking, completion_text, prompt_text, think_mode


def math_reward(
    prompts: list, completions: list, *, reference_column: str = "answer", question_column: str | None = None,
    extract: Sequence[str] = ("boxed",), boxes: Literal["one", "each_part"] = "one", timeout: float = 5.0,
    workers: int | None = None, **columns: Any,
) -> list:
    """1.0 if the final answer equals the reference (`verifiers.math`), else 0.0; None for rows without one.

    reference_column: the dataset column with the reference answer (`answer`, `solution`, ...).
    question_column: the column with the question (default: the prompt's last user message), used to reject
        answers that merely restate the question.
    extract: answer extraction rules tried in order (`boxed`, `gsm8k`, `answer_is`, `last_number`).
    boxes: several different `\\boxed{}` answers: `one` grades them wrong (a hedge); `each_part` reads them as
        the parts of one answer, joined in order as a list (problems with several parts, each boxed).
    """
    from verifiers.math import verify_batch

    refs = columns[reference_column]
    questions = columns[question_column] if question_column else [prompt_text(p) for p in prompts]
    idx = [i for i, r in enumerate(refs) if r is not None]
    verdicts = verify_batch(
        [completion_text(completions[i]) for i in idx], [str(refs[i]) for i in idx],
        questions=[questions[i] for i in idx], extract=tuple(extract), boxes=boxes, timeout=timeout,
        workers=workers,
    ) if idx else []
    out: list = [None] * len(completions)
    for i, v in zip(idx, verdicts):
        out[i] = v.score if v.is_reward else Failed(f"math verifier {v.status}: {v.detail}")
    return out


@cache
def load_checker(ref: str) -> Callable[[Any, Any, Any], bool]:
    """The code checker named by `module:function` or `file.py:function`, loaded as user rewards are (once per
    process: a Ray worker loads it again from the same reference)."""
    from rewards.base import import_function  # rewards.base imports this module

    func = import_function(ref, what="checker")
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError as e:
        raise ValueError(f"checker {ref!r} must accept (input, output, expected): {e}") from None
    return func


def _checker_ref(ref: str) -> str:
    from rewards.base import absolute_ref

    ref = absolute_ref(ref)
    load_checker(ref)  # a missing file, module or function is a config error, before any model loads
    return ref


CheckerRef = Annotated[str, AfterValidator(_checker_ref)]


def code(
    prompts: list, completions: list, *, tests_column: str = "tests", scoring: Literal["all", "fraction"] = "all",
    timeout: float = 5.0, sandbox: str = "bwrap", workers: int | None = None,
    compare: Literal["lines", "tokens", "exact"] = "lines", case_insensitive: bool = False,
    float_tol: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None, checker: CheckerRef | None = None,
    **columns: Any,
) -> list:
    """Runs the completion's program against the row's tests in a sandbox (`verifiers.code`): 1.0 if all
    pass (`scoring: fraction`: the share that pass); None for rows without tests.

    tests_column: the column holding the tests dict (or its JSON text); formats in `verifiers.code`.
    compare: how stdout is judged against the expected output: `lines` (trailing whitespace and blank lines
        ignored), `tokens` (whitespace-separated tokens) or `exact`. A row's tests dict may set its own.
    case_insensitive: compare case-folded (problems that accept `YES` / `yes`).
    float_tol: two numeric tokens within this absolute or relative error are equal (e.g. `1.0e-6`).
    checker: `module:function` or `path/to/file.py:function`, a `checker(input, output, expected) -> bool`
        that replaces the comparison (problems with several valid outputs); loaded and checked before any
        model loads. A checker that raises or returns a non-bool makes the sample `Failed`, not 0.
    """
    from verifiers.code import verify_batch

    tests = [json.loads(t) if isinstance(t, str) else t for t in columns[tests_column]]
    idx = [i for i, t in enumerate(tests) if t is not None]
    verdicts = verify_batch(
        [completion_text(completions[i]) for i in idx], [tests[i] for i in idx], workers=workers,
        scoring=scoring, timeout=timeout, sandbox=sandbox, compare=compare, case_insensitive=case_insensitive,
        float_tol=float_tol, checker=load_checker(checker) if checker else None,
    ) if idx else []
    out: list = [None] * len(completions)
    for i, v in zip(idx, verdicts):
        out[i] = v.score if v.is_reward else Failed(f"code verifier {v.status}: {v.detail}")
    return out


def think_format(
    prompts: list, completions: list, *, rendered_prompt: list[str] | None = None,
    think: Literal["auto", "write", "open", "closed"] = "auto", answer_regex: str | None = None, **columns: Any,
) -> list[float]:
    """1.0 when the completion has the think-tag structure the chat template expects, with a non-empty answer.

    think: `auto` reads the rendered prompt (the driver passes `rendered_prompt`): if the template already
        opened `<think>` the completion must be `reasoning</think>answer` (no `<think>` of its own); if it
        pre-filled a closed block (thinking off) the completion is the answer with no tags; otherwise it must
        be `<think>reasoning</think>answer`. `write` / `open` / `closed` force one case.
    answer_regex: the answer (text after `</think>`) must also contain a match, e.g. `\\\\boxed\\{`.
    """
    pattern = re.compile(answer_regex) if answer_regex else None
    scores = []
    for i, completion in enumerate(completions):
        if think != "auto":
            mode = think
        elif rendered_prompt is not None:
            mode = think_mode(rendered_prompt[i])
        else:  # no driver: a string prompt is the rendered text itself (TRL's standard format)
            mode = think_mode(prompts[i]) if isinstance(prompts[i], str) else "write"
        text = completion_text(completion)
        scores.append(1.0 if _structure_ok(text, mode, pattern) else 0.0)
    return scores


def _structure_ok(text: str, mode: str, pattern: re.Pattern | None) -> bool:
    opens, closes = text.count("<think>"), text.count("</think>")
    if mode == "write":
        ok = opens == 1 and closes == 1 and text.lstrip().startswith("<think>") and text.index("</think>") > text.index("<think>")
    elif mode == "open":
        ok = opens == 0 and closes == 1
    else:
        ok = opens == 0 and closes == 0
    answer = after_thinking(text) if ok else None
    return bool(answer and answer.strip()) and (pattern is None or pattern.search(answer) is not None)


def overlong(
    prompts: list, completions: list, *, completion_ids: list, max_length: int | None = None,
    buffer: int | None = None, max_completion_tokens: int | None = None, **columns: Any,
) -> list[float]:
    """DAPO soft overlong penalty on the completion length L in tokens: 0 if L ≤ max_length − buffer, then
    −(L − (max_length − buffer)) / buffer, down to −1 at max_length and beyond.

    max_length: defaults to the run's `rollout.max_new_tokens` (the driver passes `max_completion_tokens`).
    buffer: the soft zone in tokens (default: a fifth of max_length).
    """
    limit = max_length or max_completion_tokens
    if not limit:
        raise ValueError("overlong needs `max_length` (or the driver's max_completion_tokens)")
    buf = buffer if buffer is not None else max(1, limit // 5)
    if not 0 < buf <= limit:
        raise ValueError(f"overlong: buffer={buf} must be in (0, max_length={limit}]")
    start = limit - buf
    return [-min(1.0, max(0, len(ids) - start) / buf) for ids in completion_ids]


def length(
    prompts: list, completions: list, *, target: float | None = None, target_column: str | None = None,
    unit: Literal["tokens", "words", "chars"] = "tokens", tolerance: float = 0.0,
    completion_ids: list | None = None, **columns: Any,
) -> list[float | None]:
    """Target-length control: 1 − min(1, max(0, |L − T| − tolerance) / T) for length L and target T.

    target: one target for every sample, or target_column: a per-row target (None in a row = no reward).
    unit: count `tokens` (completion_ids), `words` or `chars` of the completion.
    """
    if (target is None) == (target_column is None):
        raise ValueError("length needs exactly one of `target` or `target_column`")
    targets = columns[target_column] if target_column else [target] * len(completions)
    if unit == "tokens" and completion_ids is None:
        raise ValueError("length with unit=tokens needs completion_ids")
    out: list[float | None] = []
    for i, (completion, t) in enumerate(zip(completions, targets)):
        if t is None:
            out.append(None)
            continue
        if float(t) <= 0:
            raise ValueError(f"length target must be > 0, got {t!r}")
        text = completion_text(completion)
        n = len(completion_ids[i]) if unit == "tokens" else len(text.split()) if unit == "words" else len(text)
        out.append(1.0 - min(1.0, max(0.0, abs(n - float(t)) - tolerance) / float(t)))
    return out
