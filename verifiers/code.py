"""Code verifier: run a completion's program against tests in a sandbox and grade it.

`verify(completion, tests, **options) -> Verdict`, `verify_batch(completions, tests, **options) -> list[Verdict]`.

Choices, each made so that known reward hacks fail:
- The program is a fenced code block after `</think>`, or the whole text; an unterminated `<think>` means no
  answer. Among several blocks: python-tagged ones first, then untagged ones (except those labelled as output,
  example usage or a test, e.g. after a line "Output:"); of those the last that defines the entry point /
  `fn_name` when the tests name one (else the last block that does), otherwise the last one.
- Tests come in three formats (`tests` dict):
  stdin/stdout `{"stdin_stdout": [{"input", "output"}, ...]}`: each test runs in a fresh process; its stdout is
  compared OUTSIDE the sandbox by a judge (`compare`: "lines" by default, "tokens" or "exact";
  `case_insensitive`; `float_tol`, see `verifiers._code_compare`); it must also exit with status 0. The tests
  dict may set "compare", "case_insensitive" and "float_tol" for its own problem (they override the options).
  call-based `{"fn_name", "inputs": [[args...]], "outputs": [value]}`: return values come back as plain data and
  are compared outside the sandbox (APPS convention: an expected `[v]` also accepts `v`).
  assert-based `{"test": "def check(candidate): ...", "entry_point": "f"}` (HumanEval; optional "prompt" is run
  in the checker so helpers the tests call are the dataset's, not the candidate's) or
  `{"asserts": ["assert f(1) == 2", ...], "setup": "..."}` (MBPP): the asserts run in a checker process; the
  candidate's functions are proxies returning plain data, so objects with a rigged `__eq__` never reach them.
- Expected outputs never enter the sandbox; assert tests do, but only after the candidate's process exists.
  The verdict comes from the harness's report, tagged with a per-run nonce, on a pipe candidate processes do not
  hold; never from an exit code.
- A `checker(input, output, expected) -> bool` (option, or "checker" in the tests dict) replaces the comparison
  for problems with several valid outputs: stdio tests pass it the stdin, stdout and expected text; call tests
  the argument list, the returned value and the expected value. It runs in the caller's process on plain data;
  if it raises or returns a non-bool, the verdict is `error` (a broken checker is never a zero reward).
- `StopIteration` / `StopAsyncIteration` from candidate code fail the test in the checker, even inside `map()`,
  `filter()` or `iter(f, sentinel)`, where Python would read them as the end of the iteration.
- Loaders: `humaneval_tests(row)` and `mbpp_tests(row)` build the tests dict from a data set row, always with
  the prompt (HumanEval: its helpers, e.g. `poly`, are the data set's in the checker) or the test imports (MBPP).
- Scoring: "all" (1.0 if every test passes, default) or "fraction" (share of tests passed).
- Statuses: `ok` (graded), `no_answer` (no program), `error` (sandbox broken or tests malformed), `timeout` (the
  sandbox did not even start in time). Anything the program does (crash, hang, exit early, syntax error) is
  graded `ok` with score 0: a timeout must never be a way out of a zero reward.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from verifiers import _harness_io
from verifiers._code_compare import COMPARE, Judge
from verifiers.sandbox import Limits, Sandbox, make_sandbox
from verifiers.verdict import Verdict

__all__ = [
    "COMPARE",
    "Options",
    "extract_code",
    "humaneval_tests",
    "mbpp_tests",
    "options",
    "verify",
    "verify_batch",
]

# Shipped into every sandbox (read-only): the harness and the codec it shares with us.
_HARNESS_FILES = {
    "harness.py": (Path(__file__).parent / "_harness.py").read_bytes(),
    "_harness_io.py": Path(_harness_io.__file__).read_bytes(),
}
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>```+|~~~+)[ \t]*(?P<lang>[^\n`]*)\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$", re.M | re.S
)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
# A block introduced by such a line is output or a usage example, not the solution: "Output:", "Example usage:".
_AUX_LABEL = re.compile(
    r"(?i)\b(?:output|outputs|result|prints?|stdout|usage|example|examples|test|tests|testing|demo|sample)\b"
    r"[^\n]{0,40}:[\s*_`]*$"
)
SCORING = ("all", "fraction")


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The program in a completion, or None if there is none (block choice: module docstring)."""
    text = completion
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return None  # still thinking: no answer yet
    blocks = list(_FENCE.finditer(text))
    if blocks:
        text = _choose_block(text, blocks, entry_point).group("body")
    code = text.strip("\n")
    return code if code.strip() else None


def _choose_block(text: str, blocks: list[re.Match], entry_point: str | None) -> re.Match:
    def aux(b: re.Match) -> bool:
        before = text[: b.start()].rstrip().rsplit("\n", 1)[-1]
        return _AUX_LABEL.search(before) is not None

    tagged = [b for b in blocks if b.group("lang").strip().lower() in _PYTHON_TAGS]
    untagged = [b for b in blocks if not b.group("lang").strip()]
    pools = ([b for b in tagged if not aux(b)], [b for b in untagged if not aux(b)], tagged, untagged, blocks)
    pool = next(p for p in pools if p)
    if entry_point:
        name = re.escape(entry_point)
        defines = re.compile(rf"^[ \t]*(?:(?:async[ \t]+)?def[ \t]+{name}\b|{name}[ \t]*=|class[ \t]+Solution\b)", re.M)
        for group in (pool, blocks):
            hits = [b for b in group if defines.search(b.group("body"))]
            if hits:
                return hits[-1]
    return pool[-1]


@dataclass(frozen=True)
class Options:
    """Validated options shared by `verify` and `verify_batch`."""

    scoring: str
    timeout: float
    limits: Limits
    sandbox: Sandbox
    site_packages: bool
    judge: Judge
    checker: object  # Callable[[input, output, expected], bool] | None


def options(
    *,
    scoring: str = "all",
    timeout: float = 5.0,
    limits: Limits | None = None,
    sandbox: str | Sandbox = "bwrap",
    python: str | None = None,
    site_packages: bool = False,
    compare: str = "lines",
    case_insensitive: bool = False,
    float_tol: float | None = None,
    checker=None,
) -> Options:
    """scoring: "all" (1/0) or "fraction". timeout: wall-clock seconds per test.
    limits: sandbox limits (`limits.wall_seconds` bounds the whole run; default `Limits()`).
    sandbox: "bwrap" (default), "none" (UNSANDBOXED: explicit opt-in only, warns loudly) or a `Sandbox`.
    python: interpreter to run in the sandbox (default: this one, `sys.executable`).
    site_packages: let programs import installed packages (default: standard library only; installed
        packages, and any data set shipped in one, stay invisible).
    compare / case_insensitive / float_tol: the stdout judge (`verifiers._code_compare`; default "lines",
        case-sensitive, no tolerance). A tests dict may override them for its problem.
    checker: `checker(input, output, expected) -> bool` instead of the comparison (several valid outputs).
    """
    if scoring not in SCORING:
        raise ValueError(f"scoring={scoring!r}: use one of {SCORING}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: must be a positive number of seconds")
    if checker is not None and not callable(checker):
        raise ValueError(f"checker={checker!r}: must be a callable checker(input, output, expected) -> bool")
    judge = Judge(compare, case_insensitive, float_tol)
    box = make_sandbox(sandbox, python, site_packages)
    return Options(scoring, float(timeout), limits or Limits(), box, bool(site_packages), judge, checker)


def verify(completion: str, tests: dict, **opts) -> Verdict:
    """Grade one completion against `tests` (formats: module docstring; options: `options`)."""
    o = options(**opts)
    return _verify_planned(completion, _plan(tests), o)


def verify_batch(
    completions: list[str], tests: list[dict], *, workers: int | None = None, **opts
) -> list[Verdict]:
    """`verify` over pairs, `workers` sandboxes at a time (default: one per CPU core this process may use)."""
    if len(completions) != len(tests):
        raise ValueError(f"verify_batch got {len(completions)} completions but {len(tests)} test dicts")
    o = options(**opts)
    plans = []
    for i, t in enumerate(tests):
        try:
            plans.append(_plan(t))
        except ValueError as exc:
            raise ValueError(f"tests[{i}]: {exc}") from None
    with ThreadPoolExecutor(
        max_workers=workers or len(os.sched_getaffinity(0)), thread_name_prefix="verify-code"
    ) as pool:
        futures = [pool.submit(_verify_planned, c, p, o) for c, p in zip(completions, plans, strict=True)]
        return [f.result() for f in futures]


# ---------------------------------------------------------------- test formats
_JUDGE_KEYS = ("compare", "case_insensitive", "float_tol")


def _plan(tests: dict) -> dict:
    """Validate a tests dict; the host-side settings (judge, checker) stay with the plan."""
    if not isinstance(tests, dict):
        raise ValueError(f"tests must be a dict, got {type(tests).__name__}")
    plan = _plan_format(tests)
    plan["judge"] = {k: tests[k] for k in _JUDGE_KEYS if k in tests}
    if plan["judge"]:
        Judge(**plan["judge"])  # validate now, with the key's name in the message
    plan["checker"] = tests.get("checker")
    if plan["checker"] is not None and not callable(plan["checker"]):
        raise ValueError('"checker" must be a callable checker(input, output, expected) -> bool')
    return plan


def _plan_format(tests: dict) -> dict:
    """The part of the plan that depends on the test format."""
    if "stdin_stdout" in tests:
        cases = tests["stdin_stdout"]
        if not cases or not all(isinstance(c, dict) and {"input", "output"} <= set(c) for c in cases):
            raise ValueError('"stdin_stdout" must be a non-empty list of {"input": str, "output": str}')
        inputs = [_as_text(c["input"]) for c in cases]
        return {"mode": "stdio", "inputs": inputs, "expected": [_as_text(c["output"]) for c in cases]}
    if "fn_name" in tests:
        inputs, outputs = tests.get("inputs"), tests.get("outputs")
        if (
            not isinstance(inputs, list)
            or not isinstance(outputs, list)
            or len(inputs) != len(outputs)
            or not inputs
        ):
            raise ValueError('call-based tests need non-empty "inputs" and "outputs" lists of equal length')
        args = [_harness_io.encode(a if isinstance(a, list) else [a]) for a in inputs]
        return {
            "mode": "call", "fn_name": str(tests["fn_name"]), "inputs": args, "expected": outputs,
            "args": [a if isinstance(a, list) else [a] for a in inputs],
        }
    if "test" in tests or "asserts" in tests:
        secret = {k: tests[k] for k in ("test", "entry_point", "prompt", "setup") if k in tests}
        if "asserts" in tests:
            asserts = tests["asserts"]
            if not asserts or not all(isinstance(a, str) for a in asserts):
                raise ValueError('"asserts" must be a non-empty list of strings')
            secret["asserts"] = list(asserts)
        elif not tests.get("entry_point"):
            raise ValueError('HumanEval-style tests need "entry_point" next to "test"')
        n = len(secret.get("asserts", [None]))
        entry = tests.get("entry_point")
        return {"mode": "assert", "setup": str(tests.get("setup", "")), "secret": secret, "n": n, "entry": entry}
    raise ValueError('tests need one of "stdin_stdout", "fn_name" (+inputs/outputs), "test" or "asserts"')


def _as_text(value) -> str:
    if isinstance(value, list):  # some datasets store lines
        return "\n".join(map(str, value))
    return str(value)


# ---------------------------------------------------------------- one run
def _verify_planned(completion: str, plan: dict, o: Options) -> Verdict:
    code = extract_code(completion, plan.get("fn_name") or plan.get("entry"))
    if code is None:
        return Verdict(0.0, "no_answer", None, "no program found in the completion")
    nonce = secrets.token_hex(16)
    job = {
        "mode": plan["mode"],
        "code": code,
        "timeout": o.timeout,
        "budget": max(0.5, o.limits.wall_seconds - 1.5),  # the harness stops in time to report
        "output_bytes": o.limits.output_bytes,
        "own_pid_namespace": o.sandbox.own_pid_namespace,  # may the harness kill every process it sees?
    }
    if plan["mode"] == "assert":
        job["setup"] = plan["setup"]
        secret = {"nonce": nonce, **plan["secret"]}
        n_tests = plan["n"]
    else:
        job["inputs"] = plan["inputs"]
        if plan["mode"] == "call":
            job["fn_name"] = plan["fn_name"]
        secret = {"nonce": nonce}
        n_tests = len(plan["inputs"])
    control = _harness_io.pack_frame(job) + _harness_io.pack_frame(secret)
    flags = ["-I", "-B"] if o.site_packages else ["-I", "-B", "-S"]  # -S: no site-packages, 3x faster start
    result = o.sandbox.run(
        [o.sandbox.python, *flags, "harness.py"],
        limits=o.limits,
        files=_HARNESS_FILES,
        control=control,
        report_bytes=o.limits.output_bytes * 6 * n_tests + (1 << 20),
    )
    return _judge(result, plan, nonce, n_tests, o, code)


class _CheckerBroken(Exception):
    """The caller's checker raised or returned a non-bool: the verdict is `error`, never a zero reward."""


def _judge(result, plan, nonce, n_tests, o: Options, code) -> Verdict:
    try:
        frames = _harness_io.unpack_frames(result.report)
    except ValueError:
        frames = []
    started = bool(frames) and frames[0] == {"ready": True}
    if not started:
        why = result.stderr.decode(errors="replace").strip()[-500:]
        if result.timed_out:
            return Verdict(0.0, "timeout", code, f"the sandbox did not start in time {why}".strip())
        return Verdict(0.0, "error", code, f"the sandbox failed to start: {why or result}")
    final = frames[-1] if len(frames) > 1 else None
    if final is None or not isinstance(final, dict) or final.get("nonce") != nonce:
        reason = "timed out" if result.timed_out else "ended without a valid report"
        if final is not None and final.get("nonce") != nonce:
            reason = "sent a report without the run's nonce"
        return Verdict(0.0, "ok", code, f"0/{n_tests} passed: the harness {reason} (candidate interference?)")
    if "checker_error" in final:
        return Verdict(0.0, "error", code, f"the tests could not be defined: {final['checker_error']}")
    results = final.get("results")
    if not isinstance(results, list) or len(results) != n_tests:
        return Verdict(0.0, "ok", code, "0 passed: malformed report")
    judge = Judge(**{**_judge_settings(o.judge), **plan["judge"]})
    checker = plan["checker"] or o.checker
    try:
        outcomes = [_outcome(plan, i, r, judge, checker) for i, r in enumerate(results)]
    except _CheckerBroken as exc:
        return Verdict(0.0, "error", code, f"the checker failed: {exc}"[:1000])
    passed = sum(ok for ok, _ in outcomes)
    score = passed / n_tests if o.scoring == "fraction" else float(passed == n_tests)
    detail = f"{passed}/{n_tests} tests passed"
    failures = [(i, why) for i, (ok, why) in enumerate(outcomes) if not ok]
    if failures:
        detail += f"; test {failures[0][0]}: {failures[0][1]}"
    return Verdict(score, "ok", code, detail[:1000])


def _judge_settings(judge: Judge) -> dict:
    return {"compare": judge.compare, "case_insensitive": judge.case_insensitive, "float_tol": judge.float_tol}


def _check(checker, args, output, expected) -> bool:
    try:
        ok = checker(args, output, expected)
    except Exception as exc:  # noqa: BLE001 - reported as the verdict's error, not swallowed
        raise _CheckerBroken(f"{type(exc).__name__}: {exc}") from None
    if type(ok) is not bool:
        raise _CheckerBroken(f"returned {type(ok).__name__}, not bool")
    return ok


def _outcome(plan: dict, i: int, r, judge: Judge, checker) -> tuple[bool, str]:
    if not isinstance(r, dict):
        return False, "malformed result"
    if plan["mode"] == "stdio":
        if r.get("status") != "done":
            return False, str(r.get("status"))
        if r.get("exit") != 0:
            return False, f"exit status {r.get('exit')}: {_last_line(r.get('stderr'))}"
        stdout = str(r.get("stdout", ""))
        if checker is not None:
            ok = _check(checker, plan["inputs"][i], stdout, plan["expected"][i])
            return ok, "" if ok else f"the checker rejected output {_preview(stdout)}"
        if not judge.matches(stdout, plan["expected"][i]):
            return (
                False,
                f"wrong output {_preview(r.get('stdout'))}, expected {_preview(plan['expected'][i])}",
            )
        return True, ""
    if plan["mode"] == "call":
        if "value" not in r:
            return False, str(r.get("error", "no value"))[:300]
        try:
            value = _harness_io.decode(r["value"])
        except (ValueError, TypeError, RecursionError):
            return False, "malformed return value"
        if checker is not None:
            ok = _check(checker, plan["args"][i], value, plan["expected"][i])
            return ok, "" if ok else f"the checker rejected {_preview(repr(value))}"
        if values_match(value, plan["expected"][i]):
            return True, ""
        return False, f"returned {_preview(repr(value))}, expected {_preview(repr(plan['expected'][i]))}"
    return bool(r.get("passed") is True), str(r.get("reason", ""))[:300]


def stdout_matches(actual: str, expected: str, **judge) -> bool:
    """The stdout judge (`compare=`, `case_insensitive=`, `float_tol=`; default: same lines after stripping
    trailing whitespace from each line and trailing blank lines from the end)."""
    return Judge(**judge).matches(actual, expected)


def values_match(actual, expected) -> bool:
    """Structural equality over plain data; tuples count as lists (JSON has none); floats within 1e-9.

    APPS convention: an expected one-element list `[v]` also accepts `v`.
    """
    if _equal(actual, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _equal(actual, expected[0])


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is bool and type(b) is bool and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (a != a and b != b)
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return a == b


def _preview(value, n: int = 80) -> str:
    text = str(value)
    return repr(text[:n] + ("..." if len(text) > n else ""))


def _last_line(text) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------- data set loaders
def humaneval_tests(row: dict) -> dict:
    """The tests dict of a HumanEval (or HumanEval+) row, always with its `prompt`, so that helpers the tests
    call (e.g. `poly` in HumanEval/32) are the data set's in the checker, never the candidate's own."""
    missing = [k for k in ("prompt", "test", "entry_point") if not isinstance(row.get(k), str) or not row[k]]
    if missing:
        raise ValueError(f"HumanEval row {row.get('task_id', '?')!r} lacks {missing}: a row needs prompt, test "
                         "and entry_point")
    return {"test": row["test"], "entry_point": row["entry_point"], "prompt": row["prompt"]}


def mbpp_tests(row: dict) -> dict:
    """The tests dict of an MBPP row (original: `test_list`, `test_setup_code`; sanitized: `test_list`,
    `test_imports`): the setup and imports run before both the candidate's code and the asserts. The entry
    point (the function the asserts call) is read off the asserts, for choosing among code blocks."""
    asserts = row.get("test_list")
    if not isinstance(asserts, list) or not asserts or not all(isinstance(a, str) for a in asserts):
        raise ValueError(f"MBPP row {row.get('task_id', '?')!r} needs a non-empty list of strings in test_list")
    imports = row.get("test_imports") or []
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ValueError(f"MBPP row {row.get('task_id', '?')!r}: test_imports must be a list of strings")
    setup = "\n".join([str(row.get("test_setup_code") or ""), *imports]).strip()
    tests = {"asserts": list(asserts), "setup": setup}
    entry = _called_function(asserts)
    if entry:
        tests["entry_point"] = entry
    return tests


def _called_function(asserts: list[str]) -> str | None:
    """The non-builtin function the asserts call most often (`remove_Occ` in `assert remove_Occ(...) == ...`)."""
    import builtins

    calls = Counter(
        name
        for a in asserts
        for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", a)
        if not hasattr(builtins, name)
    )
    return calls.most_common(1)[0][0] if calls else None
