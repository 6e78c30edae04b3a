"""Equations in answers and references for `verifiers.math` (policy line 12): which side is graded, and when
an equation is simply the wrong kind of answer.

Pure string code over normalized LaTeX, linear in the input (left sides over 100 characters are not analysed),
so it runs in the caller's process. Terms:
- a *name* is one symbol (`x`, `\\alpha`, `x'`), a subscripted name (`a_1`, `a_{n+1}`), an applied function
  (`f(2)`, `P(x, y)`), an angle (`\\angle A`, `m\\angle ABC`) or a segment (`\\overline{AB}`);
- an *assignment* is `name = value` whose value does not mention the name (`x = 2x - 3` is an equation in x);
- a *label* is a left side made only of names joined by `+`, `-`, `\\cdot`, `\\times` or juxtaposition
  (`AB`, `m+n`, `xy`): the answer names what it computed, its last side is the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers._math_extract import matching_brace

_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|"
    "tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Sigma|Upsilon|Phi|Psi|Omega"
)
_SYMBOL = rf"(?:[A-Za-z]|\\(?:{_GREEK})(?![A-Za-z]))'*(?:_(?:\{{[^{{}}]*\}}|[A-Za-z0-9]))?'*"
_ARGS = r"\((?:[^()]|\([^()]*\))*\)"
_SPECIAL = r"(?:m ?)?\\(?:angle|measuredangle) ?[A-Z]{1,3}|\\overline ?\{[A-Za-z]{1,3}\}"
_NAME_RE = re.compile(rf"(?P<special>{_SPECIAL})|(?P<symbol>{_SYMBOL})(?P<args> ?{_ARGS})?")
_SEP_RE = re.compile(r" ?(?:[-+]|\\cdot|\\times)? ?")
_TEXT_GROUP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox|operatorname)\s*\{[^{}]*\}")
_COMMAND_RE = re.compile(rf"\\(?!(?:{_GREEK})(?![A-Za-z]))[A-Za-z]+")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LETTER_RE = re.compile(r"[A-Za-z]")
_ANY_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_NAME_NOISE_RE = re.compile(r"[\s{}]")
_LEADING_SIGN_RE = re.compile(r"^[-+] ?")
_WRAPPING_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|textrm|textsf|textnormal|mbox|mathrm)\s*\{")
_OPEN, _CLOSE = "{([", "})]"
MAX_LEFT = 100


@dataclass(frozen=True)
class Equation:
    """`lhs = ... = rhs` (a chain keeps its first and last sides)."""

    lhs: str
    rhs: str
    name: str | None  # the canonical name (case-folded) when the equation is an assignment to one name
    label: bool  # the left side is a label and the right side does not mention it
    numeric_rhs: bool  # the last side has no letters: `x = 5`, not `y = 2x + 3`


def _top_level(s: str, sep: str) -> list[str] | None:
    """`s` split at `sep` outside every bracket (`\\{` counts as one); None if the brackets do not balance."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
        elif c == sep and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
        i += 1
    return [*parts, s[start:].strip()] if depth == 0 else None


def has_letters(side: str) -> bool:
    """Letters that are math (not `\\frac`, `\\pi`-free commands, or `\\text{cm}` units)."""
    side = _TEXT_GROUP_RE.sub(" ", side)
    return _LETTER_RE.search(_ANY_COMMAND_RE.sub(" ", side)) is not None


def _names(side: str) -> list[re.Match]:
    """The names in a side, commands (other than Greek letters) and `\\text{}` groups removed first."""
    side = _COMMAND_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", side))
    return list(_NAME_RE.finditer(side))


def _canonical(m: re.Match) -> str:
    text = m.group("special") or m.group("symbol")
    return _NAME_NOISE_RE.sub("", text).casefold()


def _split_label(lhs: str) -> list[re.Match] | None:
    """The names a label is made of, or None when `lhs` is not a label."""
    if len(lhs) > MAX_LEFT:
        return None
    names, pos = [], 0
    lhs = _LEADING_SIGN_RE.sub("", lhs)
    while pos < len(lhs):
        if names:
            sep = _SEP_RE.match(lhs, pos)
            pos = sep.end()
        m = _NAME_RE.match(lhs, pos)
        if m is None or m.end() == pos:
            return None
        args = m.group("args")
        if args and _canonical(m) in {_canonical(n) for n in _names(args)}:
            return None  # `x(x+1)`: a product, not a function applied to an argument
        names.append(m)
        pos = m.end()
    return names or None


def split_equation(s: str) -> Equation | None:
    """The equation `s` states, or None when it is no single equation (a value, a list, a numeric chain, or a
    chain with a symbolic middle side such as `x = 5 and y = 6`)."""
    if "=" not in s:
        return None  # most answers: no scan at all
    sides = _top_level(s, "=")
    if sides is None or len(sides) < 2 or not all(sides):
        return None
    if any(side[-1] in "<>!:\\" for side in sides[:-1]):
        return None  # `>=`, `!=`, `:=`
    items = _top_level(_THOUSANDS_RE.sub("", s), ",")
    if items is None or len(items) > 1:
        return None  # several equations or values: `x = 5, y = 6`
    letters = [has_letters(side) for side in sides]
    if not any(letters) or any(letters[1:-1]):
        return None
    lhs, rhs = sides[0], sides[-1]
    label = _split_label(lhs)
    if label is not None:
        mentioned = {_canonical(m) for m in _names(rhs)}
        if any(_canonical(m) in mentioned for m in label):
            label = None  # `x = 2x - 3`, `f(x) = f(x-1) + 1`: an equation, not a value
    single = label is not None and len(label) == 1 and lhs[0] not in "-+"
    name = _canonical(label[0]) if single else None
    return Equation(lhs, rhs, name, label is not None, not letters[-1])


def strip_wrapping_text(s: str) -> str:
    """`\\textbf{5 cm}` → `5 cm`: a text command that wraps the whole answer."""
    m = _WRAPPING_TEXT_RE.match(s)
    if m and matching_brace(s, m.end() - 1) == len(s) - 1:
        return s[m.end() : -1].strip()
    return s
