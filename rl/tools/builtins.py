"""The built-in tools, `rollout.tools: [calculator, python]`: plain functions with type hints and Google-style
docstrings like any user tool (their schemas come from transformers' `get_json_schema`).

- `calculator`: exact arithmetic on an expression, by walking its syntax tree (no `eval`): integers and
  decimals as exact fractions, `+ - * / // % **` and parentheses. Sizes are capped (expression length,
  digits of every intermediate value, exponents), so any input answers in milliseconds.
- `python`: runs the model's program in verifiers' bubblewrap sandbox (no network, read-only system, a private
  tmpfs as working directory, per-process CPU / memory / process limits, a wall-clock limit after which the
  whole process tree is killed) and answers its stdout, then its error output if it failed.
"""

from __future__ import annotations

import ast
import dataclasses
import decimal
import math
import operator
from fractions import Fraction

from verifiers.sandbox import Limits, make_sandbox

MAX_EXPRESSION_CHARS = 1000
MAX_BITS = 4096  # of the numerator and of the denominator of every intermediate value (~1233 digits)
PYTHON_LIMITS = Limits(cpu_seconds=10, memory_bytes=512 << 20, file_size_bytes=8 << 20, nproc=16, wall_seconds=10.0,
                       output_bytes=256 << 10, tmpfs_bytes=32 << 20)
MAX_PYTHON_RESPONSE_CHARS = 4000
NO_OUTPUT = "(no output: print() the values you need)"

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: Numbers combined with + - * / // % ** and parentheses, for example "(2 + 3) * 7 / 4".

    Returns:
        The exact value: an integer, a terminating decimal, or a fraction such as 1/3.
    """
    return format_exact(evaluate(expression))


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; ValueError saying what is not allowed or too large."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        raise ValueError(f"not an arithmetic expression ({type(e).__name__}: {getattr(e, 'msg', e)})") from None
    try:
        return _eval(tree.body, expression.strip())
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except RecursionError:
        raise ValueError("the expression is nested too deeply") from None


def _eval(node: ast.AST, source: str) -> Fraction:
    if isinstance(node, ast.Constant):
        return _number(node, source)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, source), _eval(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        if type(node.op) in _BINARY:
            return _checked(_BINARY[type(node.op)](left, right))
        if isinstance(node.op, ast.BitXor):
            raise ValueError("^ is not a power here: write a ** b")
        raise ValueError(f"the operator {type(node.op).__name__} is not supported (use + - * / // % **)")
    if isinstance(node, ast.Name):
        raise ValueError(f"names such as {node.id!r} are not allowed: only numbers and + - * / // % **")
    if isinstance(node, ast.Call):
        raise ValueError("function calls are not allowed: only numbers and + - * / // % **")
    raise ValueError(f"{type(node).__name__} is not allowed: only numbers and + - * / // % **")


def _number(node: ast.Constant, source: str) -> Fraction:
    if type(node.value) not in (int, float):
        raise ValueError(f"{node.value!r} is not a real number")
    text = (ast.get_source_segment(source, node) or repr(node.value)).replace("_", "")
    try:
        exact = decimal.Decimal(text)  # the literal as written: 0.1 is 1/10, not the nearest float
    except decimal.InvalidOperation:
        raise ValueError(f"cannot read the number {text!r}") from None
    if not exact.is_finite() or abs(exact.adjusted()) > MAX_BITS // 4:
        raise ValueError(f"the number {text[:40]!r} is too large")
    return _checked(Fraction(exact))


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ValueError("only integer exponents are exact; a fractional power is not supported")
    n = exponent.numerator
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(base) != 1 and base != 0 and (size - 1) * abs(n) > MAX_BITS:
        raise ValueError(f"the result of the power would have more than {MAX_BITS} bits")
    if abs(base) == 1:
        n = n % 2 if base.numerator < 0 else 0  # (+-1) ** n without computing it
    return base**n


def _checked(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise ValueError(f"an intermediate value has more than {MAX_BITS} bits")
    return value


def format_exact(value: Fraction) -> str:
    """An integer, the exact decimal when the denominator has no prime factor but 2 and 5, else `p/q`."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = (den & -den).bit_length() - 1
    rest = den >> twos
    fives = 0
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        return f"{value.numerator}/{den}"
    digits = max(twos, fives)
    scaled = abs(value.numerator) * 10**digits // den
    whole, frac = divmod(scaled, 10**digits)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{digits}d}"


def python(code: str) -> str:
    """Run a Python 3 program in a sandbox and return what it prints.

    The program runs without network access, in a fresh temporary directory, under time and memory limits;
    use print() to show the values you need.

    Args:
        code: The complete Python program to run.

    Returns:
        The program's standard output, followed by its error message if it failed.
    """
    return run_python(code)[0]


def run_python(code: str, limits: Limits = PYTHON_LIMITS) -> tuple[str, bool, bool]:
    """(response, failed, timed_out) of running `code` as `main.py` in the bubblewrap sandbox."""
    sandbox = make_sandbox("bwrap")
    result = sandbox.run([sandbox.python, "-I", "-S", "main.py"], limits=limits,
                         files={"main.py": code.encode("utf-8", errors="replace")})
    out = result.stdout.decode("utf-8", errors="replace")
    err = result.stderr.decode("utf-8", errors="replace")
    if result.timed_out:
        why, failed = f"Error: the program was killed at its {limits.wall_seconds:g} s time limit", True
    elif result.truncated:
        why, failed = f"Error: the program was killed for printing more than {limits.output_bytes} bytes", True
    elif result.returncode != 0:
        why, failed = err or f"Error: the program exited with status {result.returncode}", True
        if result.returncode in (128 + 9, 128 + 24, -9, -24):
            why += (f"\nError: killed at a resource limit (CPU {limits.cpu_seconds} s, memory "
                    f"{limits.memory_bytes >> 20} MiB, {limits.nproc} processes)")
    else:
        why, failed = err, False
    text = "\n".join(part.rstrip("\n") for part in (out, why) if part.strip())
    return _shorten(text or NO_OUTPUT), failed, result.timed_out


def python_limits(timeout_s: float) -> Limits:
    """`PYTHON_LIMITS` within a runner's time limit (wall clock and CPU time)."""
    wall = min(PYTHON_LIMITS.wall_seconds, timeout_s)
    return dataclasses.replace(PYTHON_LIMITS, wall_seconds=wall,
                               cpu_seconds=max(1, min(PYTHON_LIMITS.cpu_seconds, math.ceil(wall))))


def _shorten(text: str) -> str:
    if len(text) <= MAX_PYTHON_RESPONSE_CHARS:
        return text
    head, tail = MAX_PYTHON_RESPONSE_CHARS * 2 // 3, MAX_PYTHON_RESPONSE_CHARS // 3
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


BUILTINS = {"calculator": calculator, "python": python}
