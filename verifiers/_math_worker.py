"""Worker process of `verifiers.math`: math-verify's parse + verify (its signal timeouts off) and a guard.

Started by `verifiers._math_pool` as `python -m verifiers._math_worker MEMORY_BYTES`. It speaks
length-prefixed pickles on stdin/stdout: it first sends ("ready", pid) (or ("import_error", message)), then
answers each task (answer, reference, rel_tol) with (status, score, detail). The parent bounds time by killing
this process, so nothing here needs `signal.alarm`, and it is safe whatever thread or actor the caller is in.

The guard re-checks every "equal" from math-verify (whose numeric comparison rounds and chops, so that e.g.
`1/2004!` "equals" `1/2006!`): numeric values at 60 significant digits with the policy's tolerance rules,
intervals end by end, tuples / matrices / numeric sets element by element, symbolic expressions at random
points, and a set is never an interval or tuple.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import sys
import threading
import time
from functools import lru_cache

from verifiers._math_numeric import DPS, EXACT_REL_TOL, Num, close, mpctx, numbers_match

_HEADER = struct.Struct("<I")


def send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _limit_memory(limit: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeout still bounds the worker
        pass


def _exit_with_parent() -> None:
    """Exit if the parent dies while we are busy (a blocked read would notice EOF, a busy sympy would not)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


@lru_cache(maxsize=4096)
def _parse(latex: str) -> tuple:
    from math_verify import LatexExtractionConfig, LatexNormalizationConfig, parse

    # units=False: its unit list has single letters (m, s, t, ...), so `3n + 2m` would read as `3n + 2`;
    # the parent strips real units (`strip_units`) before sending.
    normalization = LatexNormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
    )
    config = [LatexExtractionConfig(boxed_match_priority=0, normalization_config=normalization)]
    return tuple(parse("\\boxed{" + latex + "}", extraction_config=config, parsing_timeout=None))


def grade(answer: str, reference: str, rel_tol: float) -> tuple[str, float, str]:
    """(status, score, detail) for two normalized LaTeX answers."""
    from math_verify import verify
    from sympy import Basic, Expr
    from sympy.matrices import MatrixBase

    gold, pred = _parse(reference), _parse(answer)
    if not gold:
        return "parse_error", 0.0, "math-verify could not parse the reference"
    if not pred:
        return "parse_error", 0.0, "math-verify could not parse the answer"
    gold_math = [g for g in gold if isinstance(g, (Basic, MatrixBase))]
    pred_math = [p for p in pred if isinstance(p, (Basic, MatrixBase))]
    both = bool(gold_math and pred_math)
    flags = _Flags(_has_decimal(reference) or _has_decimal(answer), "%" in reference, "%" in answer, rel_tol)
    # Two plain expressions that provably differ (at a point, or by an exact rational) are different whatever
    # math-verify says; checking first skips its `simplify` (tens of ms) for most wrong answers.
    plain = both and isinstance(gold_math[0], Expr) and isinstance(pred_math[0], Expr)
    if plain and (reason := _safe_differ(gold_math[0], pred_math[0], flags)):
        return "ok", 0.0, f"not equal: {reason}"
    if not verify(list(gold), list(pred), timeout_seconds=None, allow_set_relation_comp=True):
        if gold_math and not pred_math:
            return "parse_error", 0.0, "the answer is not parseable math"
        if plain and _equal_for_positive_symbols(gold_math[0], pred_math[0]):
            return "ok", 1.0, "equal when the symbols under roots are positive"
        return "ok", 0.0, "not equal (math-verify)"
    if both and not plain and (reason := _equation_mismatch(gold_math[0], pred_math[0])):
        return "ok", 0.0, f"math-verify said equal, but {reason}"
    if both and not plain and (reason := _safe_differ(*_values(gold_math[0], pred_math[0]), flags)):
        return "ok", 0.0, f"math-verify said equal, but {reason}"
    return "ok", 1.0, "equal (math-verify)"


def _equal_for_positive_symbols(g, p) -> bool:
    """`1/\\sqrt{n}` = `\\sqrt{1/n}`: equal once every symbol is taken as positive (the convention of
    competition problems; sympy, and so math-verify, keep them complex). Only for expressions with a root."""
    from sympy import Pow, posify, simplify

    def rooted(e) -> bool:
        return any(not a.exp.is_integer for a in e.atoms(Pow))

    if not (g.free_symbols and g.free_symbols == p.free_symbols and (rooted(g) or rooted(p))):
        return False
    if g.count_ops() + p.count_ops() > 80:
        return False  # simplify on large expressions is slow; math-verify's "no" stands
    try:
        (gp, pp), _ = posify([g, p])
        return gp == pp or simplify(gp - pp) == 0
    except (ArithmeticError, TypeError, ValueError, AttributeError, NotImplementedError):
        return False


def _safe_differ(g, p, flags: _Flags) -> str | None:
    """`_differ`, where a sympy failure while evaluating counts as no evidence either way."""
    try:
        return _differ(g, p, flags)
    except (ArithmeticError, TypeError, ValueError, AttributeError, NotImplementedError):
        return None


class _Flags:
    def __init__(self, decimal: bool, gold_pct: bool, pred_pct: bool, rel_tol: float):
        self.decimal, self.gold_pct, self.pred_pct, self.rel_tol = decimal, gold_pct, pred_pct, rel_tol


def _has_decimal(latex: str) -> bool:
    return re.search(r"\d\.|\.\d", latex) is not None


def _is_name(expr) -> bool:
    from sympy.core.function import AppliedUndef

    return expr.is_Symbol or isinstance(expr, AppliedUndef)


def _is_assignment(expr) -> bool:
    """`x = 5`, `f(x) = x^2`: a name on the left that the right side does not mention."""
    from sympy import Eq

    return isinstance(expr, Eq) and _is_name(expr.lhs) and not expr.rhs.has(expr.lhs)


def _is_label(expr) -> bool:
    """Names joined by + and products (`m + n`, `xy`, `-x`): what a labelled answer may have on its left."""
    if _is_name(expr):
        return True
    if expr.is_Add:
        return all(_is_label(a) for a in expr.args)
    if expr.is_Mul:
        return all(_is_label(a) or a == -1 for a in expr.args)
    return False


def _values(g, p) -> tuple:
    """Two assignments to the same name compare by their values (math-verify grades them so); others as is."""
    if _is_assignment(g) and _is_assignment(p) and g.lhs == p.lhs:
        return g.rhs, p.rhs
    return g, p


def _equation_mismatch(g, p) -> str | None:
    """Policy line 12 inside lists and sets, where math-verify pairs equations with values: an equation
    reference accepts a value only when it is an assignment, an answer equation counts as a value only when
    its left side is a label."""
    from sympy import Eq, FiniteSet, Tuple

    gs = list(g.args) if isinstance(g, (FiniteSet, Tuple)) else [g]
    ps = list(p.args) if isinstance(p, (FiniteSet, Tuple)) else [p]
    if any(isinstance(e, Eq) and not _is_assignment(e) for e in gs) and not all(isinstance(e, Eq) for e in ps):
        return "the reference holds an equation that a value alone does not state"
    if any(isinstance(e, Eq) and not _is_label(e.lhs) for e in ps) and not all(isinstance(e, Eq) for e in gs):
        return "the answer holds an equation where the reference has a value"
    return None


def _differ(g, p, flags: _Flags) -> str | None:
    """A reason why g and p are different, or None when the guard finds nothing against math-verify."""
    from sympy import Expr, FiniteSet, Interval, Tuple
    from sympy.matrices import MatrixBase

    if isinstance(g, FiniteSet) and isinstance(p, (Interval, Tuple)):
        return "a set is not an interval or a tuple"
    if isinstance(p, FiniteSet) and isinstance(g, (Interval, Tuple)):
        return "an interval or a tuple is not a set"
    if isinstance(g, Interval) and isinstance(p, Interval):
        if (g.left_open, g.right_open) != (p.left_open, p.right_open):
            return "the interval ends differ (open/closed)"
        return _first(_differ(a, b, flags) for a, b in ((g.start, p.start), (g.end, p.end)))
    if isinstance(g, Tuple) and isinstance(p, Tuple) and len(g) == len(p):
        return _first(_differ(a, b, flags) for a, b in zip(g, p, strict=True))
    if isinstance(g, MatrixBase) and isinstance(p, MatrixBase) and g.shape == p.shape:
        return _first(_differ(a, b, flags) for a, b in zip(g, p, strict=True))
    if isinstance(g, FiniteSet) and isinstance(p, FiniteSet) and len(g) == len(p):
        gs, ps = _sorted_numeric(g), _sorted_numeric(p)
        if gs is not None and ps is not None:
            return _first(_differ(a, b, flags) for a, b in zip(gs, ps, strict=True))
    if isinstance(g, Expr) and isinstance(p, Expr):
        if not (flags.gold_pct or flags.pred_pct):
            difference = g.doit() - p.doit()  # sympy cancels common terms: sqrt(2)x + 1/2006! - ...
            if difference.is_Rational and difference != 0:
                return "they differ by an exact nonzero rational"
        if not g.free_symbols and not p.free_symbols:
            return _numbers_differ(g, p, flags)
        if g.free_symbols == p.free_symbols:
            return _points_differ(g, p, flags)
    return None


def _first(reasons) -> str | None:
    return next((r for r in reasons if r), None)


def _sorted_numeric(s) -> list | None:
    try:
        return sorted(s, key=lambda e: float(e.evalf(30)))
    except (TypeError, ValueError):
        return None


def _to_num(expr, percent: bool, decimal: bool) -> Num | None:
    from fractions import Fraction

    from sympy import Float, N

    expr = expr.doit()
    value = N(expr, DPS)
    if not isinstance(value, Float):
        return None  # complex, infinite or symbolic: nothing to say
    exact = Fraction(int(expr.p), int(expr.q)) if expr.is_Rational else None
    return Num(exact, mpctx().make_mpf(value._mpf_), decimal=decimal, percent=percent)


def _numbers_differ(g, p, flags: _Flags) -> str | None:
    a, b = _to_num(g, flags.gold_pct, flags.decimal), _to_num(p, flags.pred_pct, flags.decimal)
    if a is None or b is None or numbers_match(a, b, flags.rel_tol):
        return None
    return f"the {DPS}-digit values differ ({_short(a.approx)} vs {_short(b.approx)})"


def _short(x) -> str:
    return mpctx().nstr(x, 12)


def _points_differ(g, p, flags: _Flags) -> str | None:
    """Evaluate both at three fixed irrational-looking points; equal functions agree everywhere."""
    from sympy import N, Rational

    ctx = mpctx()
    tol = flags.rel_tol if flags.decimal else EXACT_REL_TOL
    symbols = sorted(g.free_symbols, key=str)
    for k in range(3):
        point = {s: Rational(1000 + 377 * j + 611 * k, 1009) for j, s in enumerate(symbols)}
        values = []
        for expr in (g, p):
            re_, im_ = N(expr.subs(point), DPS).as_real_imag()
            if not (re_.is_Number and im_.is_Number and re_.is_finite and im_.is_finite):
                break
            values.append(ctx.mpc(ctx.mpf(str(re_)), ctx.mpf(str(im_))))
        if len(values) == 2 and not close(values[0], values[1], tol):
            return f"the expressions differ at {point}"
    return None


def main() -> None:
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the protocol
    _limit_memory(int(sys.argv[1]))
    _exit_with_parent()
    try:
        import math_verify  # noqa: F401
    except ImportError as e:
        send(out, ("import_error", f"{e}; install it with `pip install math-verify`"))
        return
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeouts disabled" is on purpose here
    send(out, ("ready", os.getpid()))
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the parent closed the pipe
        task = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        try:
            result = grade(*task)
        except (MemoryError, RecursionError) as e:
            result = ("parse_error", 0.0, f"{type(e).__name__} while grading (input too complex)")
        except Exception as e:  # a sympy bug on one input must not take the worker down
            result = ("error", 0.0, f"{type(e).__name__} in math-verify")
        send(out, result)


if __name__ == "__main__":
    main()
