"""Code verifier: run a completion's program against tests in a sandbox and grade it.

`verify(completion, tests, **options) -> Verdict`, `verify_batch(completions, tests, **options) -> list[Verdict]`.

Choices, each made so that known reward hacks fail:
- The program is the last fenced code block after `</think>` (python-tagged or untagged blocks preferred), or the
  whole text. An unterminated `<think>` means no answer.
- Tests come in three formats (`tests` dict):
  stdin/stdout `{"stdin_stdout": [{"input", "output"}, ...]}`: each test runs in a fresh process; its stdout is
  compared OUTSIDE the sandbox with trailing whitespace normalised and the line count required to match; it must
  also exit with status 0.
  call-based `{"fn_name", "inputs": [[args...]], "outputs": [value]}`: return values come back as plain data and
  are compared outside the sandbox (APPS convention: an expected `[v]` also accepts `v`).
  assert-based `{"test": "def check(candidate): ...", "entry_point": "f"}` (HumanEval; optional "prompt" is run
  in the checker so helpers the tests call are the dataset's, not the candidate's) or
  `{"asserts": ["assert f(1) == 2", ...], "setup": "..."}` (MBPP): the asserts run in a checker process; the
  candidate's functions are proxies returning plain data, so objects with a rigged `__eq__` never reach them.
- Expected outputs never enter the sandbox; assert tests do, but only after the candidate's process exists.
  The verdict comes from the harness's report, tagged with a per-run nonce, on a pipe candidate processes do not
  hold; never from an exit code.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from verifiers import _harness_io
from verifiers.sandbox import Limits, Sandbox, make_sandbox
from verifiers.verdict import Verdict

__all__ = ["Options", "extract_code", "options", "verify", "verify_batch"]

# Shipped into every sandbox (read-only): the harness and the codec it shares with us.
_HARNESS_FILES = {
    "harness.py": (Path(__file__).parent / "_harness.py").read_bytes(),
    "_harness_io.py": Path(_harness_io.__file__).read_bytes(),
}
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>```+|~~~+)[ \t]*(?P<lang>[^\n`]*)\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$", re.M | re.S
)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
SCORING = ("all", "fraction")


def extract_code(completion: str) -> str | None:
    """The program in a completion, or None if there is none."""
    text = completion
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return None  # still thinking: no answer yet
    blocks = list(_FENCE.finditer(text))
    if blocks:
        python_blocks = [b for b in blocks if b.group("lang").strip().lower() in _PYTHON_TAGS]
        text = (python_blocks or blocks)[-1].group("body")
    code = text.strip("\n")
    return code if code.strip() else None


@dataclass(frozen=True)
class Options:
    """Validated options shared by `verify` and `verify_batch`."""

    scoring: str
    timeout: float
    limits: Limits
    sandbox: Sandbox
    site_packages: bool


def options(
    *,
    scoring: str = "all",
    timeout: float = 5.0,
    limits: Limits | None = None,
    sandbox: str | Sandbox = "bwrap",
    python: str | None = None,
    site_packages: bool = False,
) -> Options:
    """scoring: "all" (1/0) or "fraction". timeout: wall-clock seconds per test.
    limits: sandbox limits (`limits.wall_seconds` bounds the whole run; default `Limits()`).
    sandbox: "bwrap" (default), "none" (UNSANDBOXED: explicit opt-in only, warns loudly) or a `Sandbox`.
    python: interpreter to run in the sandbox (default: this one, `sys.executable`).
    site_packages: let programs import installed packages (default: standard library only; installed
        packages, and any data set shipped in one, stay invisible).
    """
    if scoring not in SCORING:
        raise ValueError(f"scoring={scoring!r}: use one of {SCORING}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: must be a positive number of seconds")
    box = make_sandbox(sandbox, python, site_packages)
    return Options(scoring, float(timeout), limits or Limits(), box, bool(site_packages))


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
def _plan(tests: dict) -> dict:
    """Validate a tests dict and split it into what the sandbox may see (job) and what it may not."""
    if not isinstance(tests, dict):
        raise ValueError(f"tests must be a dict, got {type(tests).__name__}")
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
        return {"mode": "call", "fn_name": str(tests["fn_name"]), "inputs": args, "expected": outputs}
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
        return {"mode": "assert", "setup": str(tests.get("setup", "")), "secret": secret, "n": n}
    raise ValueError('tests need one of "stdin_stdout", "fn_name" (+inputs/outputs), "test" or "asserts"')


def _as_text(value) -> str:
    if isinstance(value, list):  # some datasets store lines
        return "\n".join(map(str, value))
    return str(value)


# ---------------------------------------------------------------- one run
def _verify_planned(completion: str, plan: dict, o: Options) -> Verdict:
    code = extract_code(completion)
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
    return _judge(result, plan, nonce, n_tests, o.scoring, code)


def _judge(result, plan, nonce, n_tests, scoring, code) -> Verdict:
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
    outcomes = [_outcome(plan, i, r) for i, r in enumerate(results)]
    passed = sum(ok for ok, _ in outcomes)
    score = passed / n_tests if scoring == "fraction" else float(passed == n_tests)
    detail = f"{passed}/{n_tests} tests passed"
    failures = [(i, why) for i, (ok, why) in enumerate(outcomes) if not ok]
    if failures:
        detail += f"; test {failures[0][0]}: {failures[0][1]}"
    return Verdict(score, "ok", code, detail[:1000])


def _outcome(plan: dict, i: int, r) -> tuple[bool, str]:
    if not isinstance(r, dict):
        return False, "malformed result"
    if plan["mode"] == "stdio":
        if r.get("status") != "done":
            return False, str(r.get("status"))
        if r.get("exit") != 0:
            return False, f"exit status {r.get('exit')}: {_last_line(r.get('stderr'))}"
        if not stdout_matches(str(r.get("stdout", "")), plan["expected"][i]):
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
        if values_match(value, plan["expected"][i]):
            return True, ""
        return False, f"returned {_preview(repr(value))}, expected {_preview(repr(plan['expected'][i]))}"
    return bool(r.get("passed") is True), str(r.get("reason", ""))[:300]


def stdout_matches(actual: str, expected: str) -> bool:
    """Same lines after stripping trailing whitespace from each line and trailing blank lines from the end."""
    return _lines(actual) == _lines(expected)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


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
