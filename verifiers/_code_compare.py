"""How `verifiers.code` compares a program's stdout with the expected output, outside the sandbox.

Three judges, as competitive-programming graders have them:
- "lines" (default): the same lines, each with trailing whitespace stripped, trailing blank lines ignored.
  Leading spaces and the line layout count, so ASCII-art and grid outputs are graded exactly.
- "tokens": the same whitespace-separated tokens (Codeforces' `wcmp`, CodeContests' and APPS' relaxed
  comparison): leading spaces, blank lines and `1 2 3` vs one number per line do not matter.
- "exact": byte for byte (after decoding), nothing stripped.
`case_insensitive` compares tokens / lines case-folded (problems that accept `YES`, `yes` or `Yes`);
`float_tol` accepts two tokens that both read as numbers within that absolute or relative tolerance
(problems that say "an absolute or relative error of 1e-6 is accepted"). Neither applies to "exact".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COMPARE = ("exact", "lines", "tokens")


@dataclass(frozen=True)
class Judge:
    """A validated stdout comparison."""

    compare: str = "lines"
    case_insensitive: bool = False
    float_tol: float | None = None

    def __post_init__(self) -> None:
        if self.compare not in COMPARE:
            raise ValueError(f"compare={self.compare!r}: use one of {COMPARE} (default 'lines')")
        if not isinstance(self.case_insensitive, bool):
            raise ValueError(f"case_insensitive={self.case_insensitive!r}: must be True or False")
        tol = self.float_tol
        if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0 <= tol < 1):
            raise ValueError(f"float_tol={tol!r}: must be None or a number in [0, 1), e.g. 1e-6")

    def matches(self, actual: str, expected: str) -> bool:
        if self.compare == "exact":
            return actual == expected
        if self.compare == "tokens":
            return self._same_tokens(actual.split(), expected.split())
        a, b = _lines(actual), _lines(expected)
        return len(a) == len(b) and all(self._same_line(x, y) for x, y in zip(a, b, strict=True))

    def _same_line(self, a: str, b: str) -> bool:
        if self.float_tol is None:
            return a.casefold() == b.casefold() if self.case_insensitive else a == b
        # A float tolerance compares the line's tokens, but the spacing between them must still agree.
        return a.split() == b.split() or (_spacing(a) == _spacing(b) and self._same_tokens(a.split(), b.split()))

    def _same_tokens(self, a: list[str], b: list[str]) -> bool:
        return len(a) == len(b) and all(self._same_token(x, y) for x, y in zip(a, b, strict=True))

    def _same_token(self, a: str, b: str) -> bool:
        if a == b or (self.case_insensitive and a.casefold() == b.casefold()):
            return True
        if self.float_tol is None:
            return False
        x, y = _number(a), _number(b)
        if x is None or y is None:
            return False
        return math.isclose(x, y, rel_tol=self.float_tol, abs_tol=self.float_tol)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _spacing(line: str) -> list[str]:
    """The whitespace runs of a line (what stays fixed when its tokens are compared with a tolerance)."""
    out, run = [], ""
    for c in line:
        if c.isspace():
            run += c
        elif run:
            out.append(run)
            run = ""
    return out


def _number(token: str) -> float | None:
    """A finite decimal number (`nan`, `inf` and `1_000` are words here, not numbers)."""
    if len(token) > 400 or not any(c.isdigit() for c in token) or "_" in token:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
