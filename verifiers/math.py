"""Math verifier: extract the final answer of a completion and grade it against a reference.

    from verifiers.math import verify, verify_batch
    verify("... so the answer is $\\boxed{\\frac{1}{2}}$", "0.5")        # Verdict(score=1.0, status='ok', ...)
    verify_batch(completions, references, extract=("boxed", "gsm8k"))  # parallel across worker processes

    python -m verifiers.math FILE.jsonl   # rows {"completion", "reference"[, "question"]}: summary table

This is the reward `math` of the toolkit's configs. The grading policy (what counts as equal, what is
wrong, what is not a reward at all) is a numbered list in verifiers/README.md, "Math grading policy";
tests/test_verifiers_math.py has one test group per line of it.

How a verdict is reached, cheapest first (each step is the policy, not a heuristic short cut):
1. Extraction and input bounds in the caller's process (`verifiers._math_extract`): linear-time string code.
2. Text identical to the reference (after light normalization) is correct; hedges inside one box (text
   between two values, a chain of different numbers) and echoes of the question are wrong.
3. Purely numeric answers are decided in the caller's process by an exact / 60-digit evaluator
   (`verifiers._math_numeric`): integers, fractions, decimals, `\\sqrt`, `\\pi`, percentages, units. The
   commonest case, a plain integer (`56088`, `x = 56088`, `AB = 5`) against a plain-number reference, is
   compared as an integer first (`_plain_integer`: the full path's verdict, at about a third of the CPU time).
4. Everything else (symbolic expressions, sets, intervals, matrices, equations, text) goes to HF math-verify
   (`parse` + `verify`, its signal-based timeouts off) in a pool of worker processes
   (`verifiers._math_pool`); a worker that runs past `timeout` is killed and replaced and the verdict is
   `timeout`. Every "equal" from math-verify is re-checked there (`verifiers._math_worker`), closing its
   known false positives.

Options (keyword-only, same for `verify` and `verify_batch`):
    extract=("boxed",)     answer extraction rules, tried in order: "boxed" (last `\\boxed{}`/`\\fbox{}`),
                           "gsm8k" (`#### N`), "answer_is" ("The answer is X", "Answer: X",
                           "Final Answer: The final answer is X"), "last_number" (last number in the text).
    boxes="one"            several different `\\boxed{}` answers: "one" grades them wrong (a hedge);
                           "each_part" reads them as the parts of one answer, joined in order as a list
                           (for problems with several parts, each boxed).
    timeout=5.0            seconds one math-verify comparison may take in a worker before it is killed.
    rel_tol=1e-6           relative tolerance for a decimal answer against a value with no finite decimal
                           expansion (`0.3333333` vs `\\frac13`); exact values are compared exactly.
    question=None          the question text; an answer that restates an expression of it is wrong.
                           (`verify_batch` takes `questions=[...]`.)
    max_answer_chars=1000  longer answers are a `parse_error` before any parsing.
    max_depth=32           deeper nesting of `{ ( [` is a `parse_error` before any parsing.
    workers=None           (`verify_batch` only) worker processes to use; default: the usable CPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache

from verifiers._math_equation import Equation, split_equation
from verifiers._math_extract import (
    BadInput,
    Hedged,
    NoAnswer,
    boxed_contents,
    check_bounds,
    check_rules,
    extract_answer,
    normalize,
    squash,
    stray_text,
    strip_units,
)
from verifiers._math_numeric import NotNumeric, Num, TooLarge, evaluate, false_chain, numbers_match
from verifiers._math_pool import WorkerCrashed, WorkerTimeout, get_pool
from verifiers.verdict import Verdict

__all__ = ["Verdict", "verify", "verify_batch"]

MAX_REFERENCE_CHARS = 10_000
BOXES = ("one", "each_part")
NUMBER_OR_WORD = re.compile(r"[-+]?[\d.,]+|[A-Za-z]+")


@dataclass(frozen=True)
class _Options:
    extract: tuple[str, ...]
    boxes: str
    timeout: float
    rel_tol: float
    max_answer_chars: int
    max_depth: int


def _options(extract, boxes, timeout, rel_tol, max_answer_chars, max_depth) -> _Options:
    if not timeout > 0:
        raise ValueError(f"timeout={timeout!r}: must be a positive number of seconds, e.g. timeout=5.0")
    if not 0 <= rel_tol < 1:
        raise ValueError(f"rel_tol={rel_tol!r}: must be in [0, 1), e.g. rel_tol=1e-6")
    if max_answer_chars < 1 or max_depth < 1:
        raise ValueError(f"max_answer_chars={max_answer_chars!r}, max_depth={max_depth!r}: must be >= 1")
    if boxes not in BOXES:
        raise ValueError(f"boxes={boxes!r}: must be one of {BOXES}; 'one' grades several different boxes wrong")
    rules = check_rules(extract)
    return _Options(rules, boxes, float(timeout), float(rel_tol), int(max_answer_chars), int(max_depth))


@dataclass(frozen=True)
class _Reference:
    text: str  # normalized
    squashed: str
    num: Num | None  # numeric value, None when not purely numeric
    problem: str | None  # why it cannot be used (status `error`)
    too_large: str | None  # numeric but beyond the evaluator's bounds
    equation: Equation | None = None  # `lhs = rhs`, see verifiers._math_equation
    plain_value: Fraction | None = None  # the exact value of a plain number (no equation, variable or `\%`)


@lru_cache(maxsize=65536)
def _reference(reference: str) -> _Reference:
    try:
        boxes = boxed_contents(reference)
        text = boxes[-1] if boxes else reference
        check_bounds(text, MAX_REFERENCE_CHARS, 64, what="reference")
    except BadInput as e:
        return _Reference("", "", None, str(e), None)
    text = normalize(text)
    if not text:
        return _Reference("", "", None, "reference is empty", None)
    equation = split_equation(text)
    try:
        num = evaluate(text)
    except NotNumeric:
        return _Reference(text, squash(text), None, None, None, equation)
    except TooLarge as e:
        return _Reference(text, squash(text), None, None, str(e), equation)
    plain = num.exact if equation is None and num.var is None and not num.percent else None
    return _Reference(text, squash(text), num, None, None, equation, plain)


# A plain integer, perhaps labelled: `56088`, `-56,088`, `56{,}088`, `x = 56088`, `AB = 5`.
_PLAIN_INT_RE = re.compile(r"(?:(?P<label>[A-Za-z]{1,3}) ?= ?)?(?P<int>[-+]?(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+))")


def _plain_integer(answer: str, ref: _Reference, raw: str) -> Verdict | None:
    """The verdict on a plain integer answer against a plain-number reference, or None when not that case.

    Most answers are such integers. The full path reaches the same verdict, only slower: no text, so no stray
    text; one `=` after a label of letters, so no chain and the label's last side is graded (line 12); a
    literal integer, so exact equality with the reference's value (lines 6, 8)."""
    if ref.plain_value is None or len(answer) > 100:
        return None
    m = _PLAIN_INT_RE.fullmatch(answer)
    if m is None or (m["label"] and len(m["label"]) > 1 and set(m["label"]) == {"e"}):
        return None  # `ee = 5`: the label is the number e², so that is a chain of two different numbers
    same = int(m["int"].replace("{,}", "").replace(",", "")) == ref.plain_value
    return Verdict(float(same), "ok", raw, "equal (numeric)" if same else "not equal (numeric)")


def _equations(answer: str, ref: _Reference) -> tuple[str, _Reference] | str:
    """(answer, reference) to grade once equations are resolved (policy line 12), or why the answer is wrong.

    A reference assignment (`x = 5`, `f(2) = 5`) is graded on its value; a reference equation with any other
    left side (`x+y+z = 6`, `xy = 4`, `2x = x + 3`) needs an equal equation. A labelled answer (`m+n = 5`)
    is graded on its last side; any other answer equation is not a value."""
    a, r = split_equation(answer), ref.equation
    if a is None and r is None:
        return answer, ref
    if a is None:
        if r.name is None:
            return f"the reference is the equation {_clip(ref.text, 60)}: a value alone does not state it"
        return answer, _reference(r.rhs)
    if r is None:
        if not a.label:
            return f"the answer is an equation ({_clip(a.lhs, 40)} = ...), the reference a value"
        return a.rhs, ref
    if a.name is not None and r.name is not None:
        if a.name != r.name:
            return f"the answer gives {_clip(a.lhs, 40)}, the reference {_clip(r.lhs, 40)}"
        return a.rhs, _reference(r.rhs)
    if r.name is not None and r.numeric_rhs:
        return f"the reference gives the value of {_clip(r.lhs, 40)}; the answer does not state it"
    return answer, ref  # two equations: equal as equations (math-verify, re-checked in the worker)


@dataclass(frozen=True)
class _Job:
    """An answer that needs math-verify."""

    raw: str  # as extracted (Verdict.extracted)
    key: tuple  # (normalized answer, normalized reference, rel_tol): the worker task


def _clip(s: str, n: int = 200) -> str:
    return s if len(s) <= n else s[:n] + f"... [{len(s)} chars]"


def _echoes(answer: str, question: str) -> bool:
    """True when a non-trivial answer is an expression copied from the question."""
    a = squash(answer)
    if len(a) < 3 or NUMBER_OR_WORD.fullmatch(a):
        return False
    return a in squash(normalize(question)).replace("$", "")


def _prepare(completion, reference, question, opts: _Options) -> Verdict | _Job:
    """Everything up to the worker: extraction, bounds, text equality, the numeric fast path."""
    if not isinstance(completion, str):
        return Verdict(0.0, "parse_error", None, f"completion is {type(completion).__name__}, not str")
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str):
        return Verdict(0.0, "error", None, f"reference is {type(reference).__name__}, not str")
    ref = _reference(reference)
    if ref.problem:
        return Verdict(0.0, "error", None, f"unusable reference: {ref.problem}")
    try:
        raw = extract_answer(completion, opts.extract, opts.boxes)
        check_bounds(raw, opts.max_answer_chars, opts.max_depth)
    except NoAnswer as e:
        return Verdict(0.0, "no_answer", None, str(e))
    except Hedged as e:
        return Verdict(0.0, "ok", None, str(e))
    except BadInput as e:
        return Verdict(0.0, "parse_error", None, str(e))
    answer = normalize(raw)
    if not answer:
        return Verdict(0.0, "no_answer", raw, "empty answer")
    if squash(answer) == ref.squashed:
        return Verdict(1.0, "ok", raw, "identical to the reference")
    if question is not None and _echoes(answer, question):
        return Verdict(0.0, "ok", raw, "the answer restates an expression from the question")
    plain = _plain_integer(answer, ref, raw)
    if plain is not None:
        return plain
    text = stray_text(answer)
    if text is not None:
        return Verdict(0.0, "ok", raw, f"text inside the answer ({_clip(text, 40)!r}) is not graded as math")
    try:
        if false_chain(answer, opts.rel_tol):
            return Verdict(0.0, "ok", raw, "a chain of equalities between different numbers")
    except TooLarge as e:
        return Verdict(0.0, "parse_error", raw, f"answer: {e}")
    resolved = _equations(answer, ref)
    if isinstance(resolved, str):
        return Verdict(0.0, "ok", raw, resolved)
    answer, ref = resolved
    try:
        num = evaluate(answer)
    except NotNumeric:
        num = None
    except TooLarge as e:
        return Verdict(0.0, "parse_error", raw, f"answer: {e}")
    integer_ref = ref.num is not None and ref.num.literal and not (ref.num.decimal or ref.num.percent)
    if integer_ref and not (num and num.literal):
        return Verdict(0.0, "ok", raw, "the reference is an integer: the answer must be written as a number")
    if num is not None and ref.num is not None:
        same = numbers_match(num, ref.num, opts.rel_tol)
        return Verdict(float(same), "ok", raw, "equal (numeric)" if same else "not equal (numeric)")
    if ref.too_large:
        return Verdict(0.0, "parse_error", raw, f"reference: {ref.too_large}")
    return _Job(raw, (strip_units(answer), strip_units(ref.text), opts.rel_tol))


class _Cache:
    """Thread-safe LRU of worker verdicts (a GRPO group repeats the same answers)."""

    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
            return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()


_cache = _Cache(20_000)


def _run(key: tuple, opts: _Options, workers: int) -> Verdict:
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        status, score, detail = get_pool(workers).run(key, opts.timeout)
    except WorkerTimeout:
        return Verdict(0.0, "timeout", None, f"math-verify ran past timeout={opts.timeout:g} s; worker killed")
    except WorkerCrashed as e:
        return Verdict(0.0, "error", None, f"verifier worker crashed: {e}")
    verdict = Verdict(score, status, None, detail)
    if status == "ok":
        _cache.put(key, verdict)
    return verdict


def default_workers() -> int:
    """Usable CPUs (affinity-aware), at least 1 and at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def verify(
    completion: str,
    reference: str,
    *,
    extract: Sequence[str] = ("boxed",),
    boxes: str = "one",
    timeout: float = 5.0,
    rel_tol: float = 1e-6,
    question: str | None = None,
    max_answer_chars: int = 1000,
    max_depth: int = 32,
) -> Verdict:
    """Grade one completion against a reference answer (options: see the module docstring)."""
    opts = _options(extract, boxes, timeout, rel_tol, max_answer_chars, max_depth)
    prepared = _prepare(completion, reference, question, opts)
    if isinstance(prepared, Verdict):
        return prepared
    return replace(_run(prepared.key, opts, default_workers()), extracted=prepared.raw)


def verify_batch(
    completions: Sequence[str],
    references: Sequence[str],
    *,
    questions: Sequence[str | None] | None = None,
    workers: int | None = None,
    extract: Sequence[str] = ("boxed",),
    boxes: str = "one",
    timeout: float = 5.0,
    rel_tol: float = 1e-6,
    max_answer_chars: int = 1000,
    max_depth: int = 32,
) -> list[Verdict]:
    """Grade many completions; answers that need math-verify run in parallel on `workers` processes."""
    if len(completions) != len(references):
        raise ValueError(f"got {len(completions)} completions but {len(references)} references: pass one each")
    if questions is not None and len(questions) != len(completions):
        raise ValueError(f"got {len(questions)} questions for {len(completions)} completions")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers!r}: must be >= 1 (or None for the CPU count)")
    opts = _options(extract, boxes, timeout, rel_tol, max_answer_chars, max_depth)
    qs = questions if questions is not None else [None] * len(completions)
    prepared = [_prepare(c, r, q, opts) for c, r, q in zip(completions, references, qs, strict=True)]
    keys = list(dict.fromkeys(p.key for p in prepared if isinstance(p, _Job)))  # each distinct task once
    n = workers or default_workers()
    results: dict = {}
    if keys:
        get_pool(n)
        with ThreadPoolExecutor(max_workers=min(n, len(keys))) as ex:
            results = dict(zip(keys, ex.map(lambda k: _run(k, opts, n), keys), strict=True))
    return [p if isinstance(p, Verdict) else replace(results[p.key], extracted=p.raw) for p in prepared]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m verifiers.math FILE.jsonl`: grade rows {completion, reference[, question]}, print a summary."""
    parser = argparse.ArgumentParser(prog="python -m verifiers.math", description=main.__doc__)
    parser.add_argument("file", help="JSON lines with keys completion, reference and optionally question")
    parser.add_argument("--extract", default="boxed", help="comma-separated rules, e.g. boxed,gsm8k")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per math-verify comparison")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    missing = [i for i, r in enumerate(rows) if "completion" not in r or "reference" not in r]
    if missing:
        raise SystemExit(f"{args.file}: rows {missing[:5]} lack 'completion' or 'reference'")
    n_workers = args.workers or default_workers()
    start = time.perf_counter()
    warm = [(rf"\boxed{{(x+{k})^2}}", f"x^2+{2 * k}x+{k * k}") for k in range(1, n_workers + 1)]
    verify_batch([c for c, _ in warm], [r for _, r in warm], workers=n_workers)  # start the workers
    _cache.clear()
    startup = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = verify_batch(
        [r["completion"] for r in rows],
        [r["reference"] for r in rows],
        questions=[r.get("question") for r in rows],
        workers=n_workers,
        extract=tuple(args.extract.split(",")),
        timeout=args.timeout,
    )
    seconds = time.perf_counter() - start
    counts = Counter(v.status for v in verdicts)
    n = max(len(verdicts), 1)
    print(f"{'rows':<14}{len(verdicts):>10}")
    print(f"{'accuracy':<14}{sum(v.score for v in verdicts) / n:>10.4f}")
    for status in ("ok", "no_answer", "parse_error", "timeout", "error"):
        print(f"{status:<14}{counts.get(status, 0):>10}")
    rate = len(verdicts) / max(seconds, 1e-9)
    print(f"{'throughput':<14}{rate:>10.1f} verdicts/s ({seconds:.2f} s on {n_workers} workers)")
    print(f"{'start-up':<14}{startup:>10.2f} s (worker processes, not in the throughput)")


if __name__ == "__main__":
    main()
