"""Exact and high-precision evaluation of purely numeric LaTeX answers for `verifiers.math`.

A small recursive-descent evaluator for what most answers are: numbers, `+ - \\cdot \\times / \\div ^ !`,
`\\frac`, `\\sqrt`, `\\binom`, `\\pi`, `e`, `\\sin \\cos \\tan \\ln \\exp`, percentages, units and `x =`.
Rationals stay exact (`fractions.Fraction`); anything irrational is carried at 60 significant digits in a
private mpmath context (thread-safe, no global precision changes). Whatever it does not understand raises
`NotNumeric` and is left to math-verify in a worker process. Sizes are bounded (`TooLarge`), so it is safe to
run on hostile input in the caller's process. It is both the fast path and the independent second check.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, replace
from fractions import Fraction

from mpmath.ctx_mp import MPContext

from verifiers._math_equation import strip_wrapping_text
from verifiers._math_extract import FRAC_DIGITS_RE, strip_units

DPS = 60  # significant digits for irrational values
MAX_BITS = 100_000  # |value| must lie in 2^(±MAX_BITS); exact numerators/denominators are capped alike
WORK_BITS = 3_000_000  # total size of exact intermediate results per evaluation (bounds CPU time)
EXACT_REL_TOL = "1e-45"  # "equal" for two exact-but-irrational values carried at DPS digits
ABS_FLOOR = "1e-50"


class NotNumeric(Exception):
    """The text is not a plain numeric expression this evaluator handles (math-verify decides instead)."""


class TooLarge(Exception):
    """A number or intermediate result beyond 2^(±MAX_BITS), e.g. `10^{10^{10}}`."""


_local = threading.local()


def mpctx() -> MPContext:
    """This thread's mpmath context at DPS digits (mpmath's global `mp` is shared by all threads)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = _local.ctx = MPContext()
        ctx.dps = DPS
    return ctx


def _wide_ctx(bits: int) -> MPContext:
    """This thread's second context, at `bits` of precision, for re-checking near-equal values."""
    ctx = getattr(_local, "wide", None)
    if ctx is None:
        ctx = _local.wide = MPContext()
    ctx.prec = bits
    return ctx


@dataclass(frozen=True)
class Num:
    """A numeric answer: exact rational when known, always a DPS-digit approximation."""

    exact: Fraction | None
    approx: object  # an mpf of the private context
    decimal: bool = False  # written with a decimal point: the writer approximated
    percent: bool = False  # written with a trailing `\%`
    var: str | None = None  # `x` in `x = 5`
    literal: bool = False  # a plain number: digits, sign, separators, decimal point, scientific notation
    source: str | None = None  # the text it was evaluated from, to re-evaluate at a higher precision
    exact_bits: int = 0  # the largest exact intermediate (bits): tiny terms like 1/2004! hide below DPS
    scale: int = 1  # 100 for the "p" reading of `p\%`


_VAR_RE = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?")
_LITERAL_RE = re.compile(
    r"[-+]?(?:(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:(?:\\times|\\cdot)10\^\{?[-+]?\d+\}?)?"
)


_APPROX_RE = re.compile(r"\\approx(?![A-Za-z])")
_LETTER_RE = re.compile(r"[A-Za-z]")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_EXPONENT_RE = re.compile(r"[eE][-+]?\d")
_PERCENT_OF_RE = re.compile(  # what a trailing \% may apply to as a whole: a number, a fraction, a mixed number
    r"[-+]?(?:(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d*)?|\.\d+|(?:\d+)?\\frac\{\d+\}\{\d+\})"
)


def chain_sides(s: str) -> tuple[str | None, list[str], list[str]]:
    """(var, exact sides, approximations) of `x = a = b \\approx c`; ([s], []) when there is no chain."""
    segments = [seg.strip() for seg in _APPROX_RE.split(s)]
    sides = [side.strip() for side in segments[0].split("=")]
    var, approximations = None, segments[1:]
    if len(sides) > 1 and _VAR_RE.fullmatch(sides[0]):
        var, sides = sides[0], sides[1:]
    elif len(sides) == 1 and approximations and _VAR_RE.fullmatch(sides[0]):  # `x \\approx 3.14`
        var, sides, approximations = sides[0], approximations[:1], approximations[1:]
    return var, sides, approximations


def split_core(s: str) -> tuple[str, bool, str | None]:
    """(core, percent, var): a chain is graded on its last exact side (`x = 2+3 = 5 \\approx 5.0` is 5),
    then `\\text{}` wrappers, units and `\\%` are stripped."""
    var, sides, _ = chain_sides(s)
    if not all(sides):
        raise NotNumeric("an empty side of an equation")
    if any(_LETTER_RE.search(_COMMAND_RE.sub("", side)) for side in sides[:-1]):
        raise NotNumeric("an equation, or several assignments")  # `x = 5 and y = 6` is not the number 6
    s = strip_units(strip_wrapping_text(sides[-1]))
    percent = False
    if s.endswith("\\%") or s.endswith("%"):
        percent, s = True, s[: -2 if s.endswith("\\%") else -1].rstrip()
        if not _PERCENT_OF_RE.fullmatch(s.replace(" ", "")):
            raise NotNumeric("a percent sign after an expression")  # `1 + 10\%`: the % binds to 10 only
    if not s:
        raise NotNumeric("empty after removing units")
    return s, percent, var


_MIXED_RE = re.compile(r"(?<![\d.}^_])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_TOKEN_RE = re.compile(
    r"(?P<num>\d{1,3}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?|\d+\.?\d*|\.\d+)|(?P<cmd>\\[A-Za-z]+)"
    r"|(?P<sym>[-+*/^!(){}\[\]])|(?P<letter>[A-Za-z])|(?P<space>\s+)"
)
_FUNCS = {"\\sin", "\\cos", "\\tan", "\\ln", "\\exp"}
_ATOM_CMDS = {"\\pi", "\\frac", "\\sqrt", "\\binom"} | _FUNCS


def _mixed(m: re.Match) -> str:
    whole, num, den = m.groups()
    if int(num) >= int(den):
        raise NotNumeric("improper fraction after an integer")
    return f"({whole}+\\frac{{{num}}}{{{den}}})"


def tokenize(s: str) -> tuple[list[str], bool]:
    """Tokens of a numeric expression and whether it contains a decimal literal."""
    s = FRAC_DIGITS_RE.sub(r"\\frac{\1}{\2}", s)
    s = _MIXED_RE.sub(_mixed, s)
    tokens, decimal, pos = [], False, 0
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if m is None:
            raise NotNumeric(f"unsupported character {s[pos]!r}")
        pos = m.end()
        if m.lastgroup == "space":
            continue
        text = m.group(0)
        if m.lastgroup == "num":
            if _EXPONENT_RE.match(s, pos, pos + 3):
                raise NotNumeric("scientific e-notation")
            decimal = decimal or "." in text
        tokens.append(text)
    return tokens, decimal


class _Evaluator:
    """Recursive descent over tokens; each method returns a (Fraction | None, mpf) pair."""

    def __init__(self, tokens: list[str], ctx: MPContext):
        self.tokens, self.i, self.work, self.ctx, self.exact_bits = tokens, 0, 0, ctx, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        t = self.peek()
        if t is None or (expected is not None and t != expected):
            raise NotNumeric(f"expected {expected or 'more input'}")
        self.i += 1
        return t

    def value(self, exact: Fraction | None, approx=None) -> tuple:
        ctx = self.ctx
        if exact is not None:
            bits = exact.numerator.bit_length() + exact.denominator.bit_length()
            self.work += bits
            self.exact_bits = max(self.exact_bits, bits)
            if bits > 2 * MAX_BITS or self.work > WORK_BITS:
                raise TooLarge("exact value too large")
            approx = ctx.mpf(exact.numerator) / exact.denominator
        if not ctx.isfinite(approx):
            raise NotNumeric("not a finite real number")
        if approx and abs(ctx.mag(approx)) > MAX_BITS:
            raise TooLarge(f"magnitude beyond 2^{MAX_BITS}")
        return exact, approx

    def run(self) -> tuple:
        v = self.expr()
        if self.peek() is not None:
            raise NotNumeric(f"unexpected {self.peek()!r}")
        return v

    def expr(self) -> tuple:
        v = self.term()
        while self.peek() in ("+", "-"):
            op, w = self.take(), self.term()
            sign = 1 if op == "+" else -1
            exact = v[0] + sign * w[0] if v[0] is not None and w[0] is not None else None
            v = self.value(exact, v[1] + sign * w[1])
        return v

    def term(self) -> tuple:
        v = self.signed()
        while True:
            t = self.peek()
            if t in ("*", "\\cdot", "\\times"):
                self.take()
                v = self.mul(v, self.signed())
            elif t in ("/", "\\div"):
                self.take()
                w = self.signed()
                if w[1] == 0:
                    raise NotNumeric("division by zero")
                v = self.mul(v, (1 / w[0] if w[0] is not None else None, 1 / w[1]))
            elif t is not None and (t in ("(", "{", "e") or t in _ATOM_CMDS):
                v = self.mul(v, self.power())  # implicit multiplication: 2\pi, 4\sqrt{2}, 3(1+2)
            else:
                return v

    def mul(self, v: tuple, w: tuple) -> tuple:
        exact = v[0] * w[0] if v[0] is not None and w[0] is not None else None
        return self.value(exact, v[1] * w[1])

    def signed(self) -> tuple:
        if self.peek() in ("-", "+"):
            op, v = self.take(), self.signed()
            return v if op == "+" else self.value(-v[0] if v[0] is not None else None, -v[1])
        return self.power()

    def power(self) -> tuple:
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        t = self.peek()
        if t == "-":
            self.take()
            e = self.atom()
            exponent = self.value(-e[0] if e[0] is not None else None, -e[1])
        else:
            exponent = self.atom()  # `{...}`, a number (`2^10` is 1024, as in plain text) or a constant
        if self.peek() in ("^", "!"):
            raise NotNumeric("ambiguous exponent")
        return self.pow(base, exponent)

    def pow(self, base: tuple, exponent: tuple) -> tuple:
        ctx = self.ctx
        (b, b_approx), (e, e_approx) = base, exponent
        if b is not None and e is not None and e.denominator == 1:
            n = e.numerator
            if b == 0 and n < 0:
                raise NotNumeric("division by zero")
            if b in (0, 1) or n == 0:
                return self.value(b**n if n else Fraction(1))
            if abs(n) * max(b.numerator.bit_length(), b.denominator.bit_length()) > 2 * MAX_BITS:
                raise TooLarge("exact power too large")
            return self.value(b**n)
        if b is not None and e is not None and b > 0 and e.denominator <= 64:
            root = _exact_root(b, e.denominator)
            if root is not None:
                return self.pow((root, None), (Fraction(e.numerator), None))
        if b_approx < 0:
            raise NotNumeric("complex power")
        if b_approx == 0:
            return self.value(Fraction(0)) if e_approx > 0 else _raise(NotNumeric("0 to a power <= 0"))
        if abs(e_approx * ctx.log(abs(b_approx), 2)) > MAX_BITS:
            raise TooLarge(f"power beyond 2^{MAX_BITS}")
        return self.value(None, ctx.power(b_approx, e_approx))

    def postfix(self) -> tuple:
        v = self.atom()
        while self.peek() == "!":
            self.take()
            n = _as_int(v[0], "factorial")
            if n < 0 or n * max(1, n.bit_length()) > 2 * MAX_BITS:
                raise TooLarge("factorial too large") if n > 0 else NotNumeric("negative factorial")
            v = self.value(Fraction(math.factorial(n)))
        return v

    def atom(self) -> tuple:
        ctx, t = self.ctx, self.take()
        if t[0].isdigit() or t[0] == ".":
            return self.value(Fraction(t.replace("{,}", "").replace(",", "")))
        if t in ("(", "{"):
            v = self.expr()
            self.take(")" if t == "(" else "}")
            return v
        if t == "\\pi":
            return self.value(None, +ctx.pi)
        if t == "e":
            return self.value(None, +ctx.e)
        if t == "\\frac":
            num, den = self.arg(), self.arg()
            if den[1] == 0:
                raise NotNumeric("division by zero")
            return self.mul(num, (1 / den[0] if den[0] is not None else None, 1 / den[1]))
        if t == "\\sqrt":
            index = (Fraction(2), ctx.mpf(2))
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            radicand = self.arg()
            inv = (1 / index[0] if index[0] else None, 1 / index[1])
            return self.pow(radicand, inv)
        if t == "\\binom":
            n, k = _as_int(self.arg()[0], "binom"), _as_int(self.arg()[0], "binom")
            if not 0 <= k <= n or n > 50_000:
                raise NotNumeric("binomial out of range")
            return self.value(Fraction(math.comb(n, k)))
        if t in _FUNCS:
            return self.func(t, self.arg())
        raise NotNumeric(f"unsupported token {t!r}")

    def arg(self) -> tuple:
        """A TeX macro argument: `{...}`, `(...)` after \\sqrt, one digit, or `\\pi`."""
        t = self.peek()
        if t in ("{", "(", "\\pi") or (t is not None and len(t) == 1 and t.isdigit()):
            return self.atom()
        raise NotNumeric("unsupported macro argument")

    def func(self, name: str, x: tuple) -> tuple:
        ctx, a = self.ctx, x[1]
        if name == "\\ln":
            if a <= 0:
                raise NotNumeric("log of a non-positive number")
            return self.value(Fraction(0) if x[0] == 1 else None, ctx.ln(a))
        if name == "\\exp":
            if abs(a) > MAX_BITS * 0.69:
                raise TooLarge("exp too large")
            return self.value(Fraction(1) if x[0] == 0 else None, ctx.exp(a))
        if abs(a) > 10**6:
            raise NotNumeric("trig argument too large")
        f = {"\\sin": ctx.sin, "\\cos": ctx.cos, "\\tan": ctx.tan}[name]
        return self.value(None, f(a))


def _raise(exc: Exception):
    raise exc


def _as_int(f: Fraction | None, what: str) -> int:
    if f is None or f.denominator != 1:
        raise NotNumeric(f"{what} of a non-integer")
    return f.numerator


def _iroot(n: int, k: int) -> int | None:
    """The exact k-th root of n >= 0, or None."""
    if n < 2:
        return n
    r = int(round(n ** (1.0 / k))) if n.bit_length() < 1000 else None
    if r is None:  # Newton's method on integers for very large n
        r = 1 << (n.bit_length() // k + 1)
        while True:
            s = ((k - 1) * r + n // r ** (k - 1)) // k
            if s >= r:
                break
            r = s
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**k == n:
            return c
    return None


def _exact_root(b: Fraction, k: int) -> Fraction | None:
    num, den = _iroot(b.numerator, k), _iroot(b.denominator, k)
    return Fraction(num, den) if num is not None and den is not None else None


def evaluate(s: str, ctx: MPContext | None = None) -> Num:
    """Evaluate a normalized answer (in `ctx`, default: DPS digits); raises NotNumeric or TooLarge."""
    core, percent, var = split_core(s)
    tokens, decimal = tokenize(core)
    if not tokens:
        raise NotNumeric("empty")
    evaluator = _Evaluator(tokens, ctx or mpctx())
    exact, approx = evaluator.run()
    if percent:
        exact, approx = (exact / 100 if exact is not None else None), approx / 100
    literal = _LITERAL_RE.fullmatch(core.replace(" ", "")) is not None
    return Num(exact, approx, decimal, percent, var, literal, s, evaluator.exact_bits)


def _terminates(f: Fraction) -> bool:
    d = f.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def close(x, y, rel_tol, ctx: MPContext | None = None, abs_floor=ABS_FLOOR) -> bool:
    """|x - y| <= rel_tol * max(|x|, |y|), or both within abs_floor of each other."""
    ctx = ctx or mpctx()
    diff = abs(x - y)
    return bool(diff <= ctx.mpf(rel_tol) * max(abs(x), abs(y)) or diff <= ctx.mpf(abs_floor))


def _close_when_widened(a: Num, b: Num) -> bool:
    r"""Re-check two values that agree to DPS digits at a precision that sees every exact term in them.

    `\sqrt2 + 1/2006!` and `\sqrt2 + 1/2004!` agree to 5,700 digits; their largest exact intermediate
    (2006!, ~19k bits) says how far down a difference can hide. Bounded by MAX_BITS.
    """
    bits = max(a.exact_bits, b.exact_bits)
    if bits <= 150 or a.source is None or b.source is None:
        return True  # nothing exact was large enough to hide below DPS digits
    ctx = _wide_ctx(bits + 256)
    try:
        x, y = evaluate(a.source, ctx).approx * a.scale, evaluate(b.source, ctx).approx * b.scale
    except (NotNumeric, TooLarge):
        return True
    return close(x, y, ctx.mpf(2) ** (-bits - 128), ctx, abs_floor=0)


def _candidates(n: Num) -> list[Num]:
    """`p\\%` stands for p/100 and for p (the number the question asked for)."""
    if not n.percent:
        return [n]
    scaled = replace(n, exact=n.exact * 100 if n.exact is not None else None, approx=n.approx * 100, scale=100)
    return [n, scaled]


def _match_one(a: Num, b: Num, rel_tol: float) -> bool:
    if a.exact is not None and b.exact is not None:
        if a.exact == b.exact:
            return True
        approximates = (a.decimal and not _terminates(b.exact)) or (b.decimal and not _terminates(a.exact))
        return approximates and close(a.approx, b.approx, rel_tol)
    if a.decimal or b.decimal:
        return close(a.approx, b.approx, rel_tol)
    return close(a.approx, b.approx, EXACT_REL_TOL) and _close_when_widened(a, b)


def numbers_match(a: Num, b: Num, rel_tol: float) -> bool:
    """The numeric equality of the grading policy (exact rationals, decimals within rel_tol, percentages)."""
    if a.var is not None and b.var is not None and a.var != b.var:
        return False
    return any(_match_one(x, y, rel_tol) for x in _candidates(a) for y in _candidates(b))


def false_chain(s: str, rel_tol: float) -> bool:
    """True for a chain whose numeric sides disagree, a hedge math-verify would pass (it grades `=` chains by
    the last side and `\\approx` by the first): `\\frac{\\sqrt3}{7} = \\frac{\\pi}{9}`, `x = 5 = 6`,
    `\\frac{\\sqrt3}{7} \\approx \\frac{\\pi}{9}`. An approximation must be within one unit of its last written
    digit (`\\pi \\approx 3.14` is fine, `\\pi \\approx 3.3` is not), or within 1% when not a plain decimal."""
    _, sides, approximations = chain_sides(s)
    if len(sides) + len(approximations) < 2:
        return False
    try:
        exact = [evaluate(side) for side in sides]
        approx = [(evaluate(a), a) for a in approximations]
    except NotNumeric:
        return False  # a symbolic side: an equation, math-verify's business (TooLarge propagates)
    if not all(numbers_match(exact[-1], v, rel_tol) for v in exact[:-1]):
        return True
    ctx = mpctx()
    for value, text in approx:
        decimals = re.fullmatch(r"-?\d+(?:\.(\d*))?", text.replace(" ", ""))
        unit = ctx.mpf(10) ** -len(decimals.group(1) or "") if decimals else abs(exact[-1].approx) / 100
        if abs(value.approx - exact[-1].approx) > unit:
            return True
    return False
