"""Answer extraction, input bounds and light LaTeX normalization for `verifiers.math`.

Pure string code (no sympy): everything here runs in the caller's process and is linear in the input
length, so it is safe on hostile completions. The grading policy it implements is in verifiers/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RULES = ("boxed", "gsm8k", "answer_is", "last_number")


class NoAnswer(Exception):
    """Nothing to grade was found (status `no_answer`)."""


class Hedged(Exception):
    """Several different final answers were given (graded wrong: status `ok`, score 0)."""


class BadInput(Exception):
    """The answer is too long, too deep, unbalanced or binary (status `parse_error`)."""


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"(?:final\s+answer|answer)\s*(?:\*\*)?\s*(?:is\b|:|=)\s*:?", re.IGNORECASE)
_LAST_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ud800-\udfff]")
_TOKEN_RE = re.compile(r"[^\s$]*")
_WHITESPACE_RE = re.compile(r"\s+")


def matching_brace(text: str, start: int) -> int:
    """Index of the `}` closing the `{` at `start` (escaped `\\{ \\}` skipped), or -1 if it never closes."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def boxed_contents(text: str) -> list[str]:
    """Contents of every top-level `\\boxed{...}` / `\\fbox{...}` in order; raises BadInput if one never closes."""
    out = []
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            end = matching_brace(text, i)
            if end < 0:
                raise BadInput("unbalanced braces: \\boxed{ never closes")
            out.append(text[i + 1 : end])
            pos = end + 1
        else:  # `\boxed 42`: one whitespace-delimited token
            token = _TOKEN_RE.match(text, i).group(0)
            out.append(token)
            pos = i + len(token)
    return [_unwrap_boxes(c).strip() for c in out]


def _unwrap_boxes(s: str) -> str:
    """`\\boxed{\\boxed{5}}` → `5`: a box that is the whole content is unwrapped."""
    while True:
        t = s.strip()
        m = _BOX_RE.match(t)
        if not m or not t.endswith("}"):
            return s
        start = t.find("{", m.end())
        if start < 0 or t[m.end() : start].strip() or matching_brace(t, start) != len(t) - 1:
            return s
        s = t[start + 1 : -1]


def squash(s: str) -> str:
    """Whitespace-free form used to compare two answers as text."""
    return _WHITESPACE_RE.sub("", s).rstrip(".")


def _rule_boxed(text: str, boxes_policy: str = "one") -> str | None:
    boxes = boxed_contents(text)
    if not boxes:
        return None
    filled = [b for b in boxes if squash(b)]  # an empty box (e.g. the prompt's instruction echoed) says nothing
    if not filled:
        raise NoAnswer("empty \\boxed{}")
    if boxes_policy == "each_part" and len(filled) > 1:
        return ", ".join(filled)  # one part per box, in order: graded as a list (policy line 14)
    distinct = {squash(b) for b in filled}
    if len(distinct) > 1:
        raise Hedged(f"{len(distinct)} different boxed answers (hedging is graded wrong)")
    return filled[-1]


def _rule_gsm8k(text: str) -> str | None:
    matches = _GSM8K_RE.findall(text)
    if not matches:
        return None
    return matches[-1].strip().rstrip(".").strip("$ ")


def _delimited(rest: str) -> str | None:
    """The math at the start of `rest` when it opens with `$$`, `$`, `\\(` or `\\[`."""
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(open_):
            end = rest.find(close, len(open_))
            return rest[len(open_) : end] if end >= 0 else rest[len(open_) :]
    return None


def _rule_answer_is(text: str) -> str | None:
    last = None
    for m in _ANSWER_IS_RE.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end() :].lstrip(" \t*")
    math = _delimited(rest)
    if math is None:
        line = rest.split("\n", 1)[0]
        math = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    boxes = boxed_contents(math)
    answer = boxes[-1] if boxes else math
    return answer.strip().strip("*").strip().rstrip(".").strip()


def _rule_last_number(text: str) -> str | None:
    numbers = _LAST_NUMBER_RE.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


_RULE_FUNCS = {
    "boxed": _rule_boxed,
    "gsm8k": _rule_gsm8k,
    "answer_is": _rule_answer_is,
    "last_number": _rule_last_number,
}


def check_rules(rules: Sequence[str]) -> tuple[str, ...]:
    """Validate the `extract=` option (a non-empty sequence of rule names)."""
    if isinstance(rules, str):
        rules = (rules,)
    rules = tuple(rules)
    unknown = [r for r in rules if r not in _RULE_FUNCS]
    if not rules or unknown:
        raise ValueError(f"extract={rules!r}: each rule must be one of {RULES}; e.g. extract=('boxed', 'gsm8k')")
    return rules


def extract_answer(completion: str, rules: tuple[str, ...], boxes: str = "one") -> str:
    """The answer text a completion commits to, by the first rule (in order) that finds one.

    Only the text after the last `</think>` is read; an unclosed `<think>` means the model never answered.
    `boxes` is the several-boxes policy ("one": different boxes are a hedge; "each_part": a list of parts).
    Raises NoAnswer, Hedged or BadInput.
    """
    if "</think>" in completion:
        completion = completion.rsplit("</think>", 1)[1]
    elif "<think>" in completion:
        raise NoAnswer("unfinished <think> block (no </think>)")
    for rule in rules:
        answer = _rule_boxed(completion, boxes) if rule == "boxed" else _RULE_FUNCS[rule](completion)
        if answer is not None:
            if not answer.strip():
                raise NoAnswer(f"empty answer ({rule})")
            return answer.strip()
    raise NoAnswer(f"no answer found by extract={rules}")


def check_bounds(answer: str, max_chars: int, max_depth: int, what: str = "answer") -> None:
    """Raise BadInput unless `answer` is short, shallow, brace-balanced text (checked before any sympy)."""
    if len(answer) > max_chars:
        raise BadInput(f"{what} is {len(answer)} chars (max_answer_chars={max_chars})")
    if _CONTROL_RE.search(answer):
        raise BadInput(f"{what} contains control or binary characters")
    depth = max_seen = 0
    braces = 0
    for c in answer:
        if c in "{([":
            depth += 1
            max_seen = max(max_seen, depth)
        elif c in "})]":
            depth -= 1
        if c == "{":
            braces += 1
        elif c == "}":
            braces -= 1
            if braces < 0:
                break
    if braces != 0:
        raise BadInput(f"{what} has unbalanced braces")
    if max_seen > max_depth:
        raise BadInput(f"{what} nests {max_seen} deep (max_depth={max_depth})")


_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u00b0": "^\\circ", "\u221a": "\\sqrt",
}
# Commands math-verify turns into \text{} (latex2sympy2_extended's normalization); its unit-stripping regex then
# deletes from the first \text{ to the end of the answer when the answer ends in `}`.
_TEXT_CMDS = r"text|textbf|textit|textrm|textsf|texttt|textnormal|mbox|mathrm|mathit|mathbf"
# An Oxford comma before the connective (`19, 46, \text{ and } 82`) belongs to it.
_CONNECTIVE_RE = re.compile(rf"(?:,\s*)?\\(?:{_TEXT_CMDS})\s*\{{\s*,?\s*(?:or|and)\s*,?\s*\}}")
# Single-letter symbols, not units or text: bold / italic letters, roman e, i, d (`\mathrm{m}` stays a unit).
_TEXT_LETTER_RE = re.compile(r"\\(?:mathbf|mathit|boldsymbol|bm)\s*\{\s*([A-Za-z])\s*\}|\\mathrm\s*\{\s*([eid])\s*\}")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SPACING_RE = re.compile(r"\\[,;: ]|~|\\(?:displaystyle|textstyle|left|right)(?![A-Za-z])")
_THOUSANDS_SPACE_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3}(?!\d))")
_SQRT_PAREN_RE = re.compile(r"\\sqrt\s*\(")
_SQRT_DIGIT_RE = re.compile(r"\\sqrt\s*(\d)")
FRAC_DIGITS_RE = re.compile(r"\\frac\s*(\d)\s*(\d)(?!\d)")  # TeX: \frac34 is \frac{3}{4}


def _strip_delims(s: str) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        for open_, close in _DELIMS:
            if len(s) >= len(open_) + len(close) and s.startswith(open_) and s.endswith(close):
                s = s[len(open_) : -len(close)]
                changed = True
                break
    return s


def _sqrt_parens(s: str) -> str:
    """`\\sqrt(2)` → `\\sqrt{2}` (math-verify drops the argument and reads `4\\sqrt(2)` as 4)."""
    out = []
    pos = 0
    for m in _SQRT_PAREN_RE.finditer(s):
        if m.start() < pos:
            continue
        depth, j = 0, m.end() - 1
        while j < len(s):
            depth += {"(": 1, ")": -1}.get(s[j], 0)
            if depth == 0:
                break
            j += 1
        if j == len(s):
            break
        out.append(s[pos : m.start()] + "\\sqrt{" + s[m.end() : j] + "}")
        pos = j + 1
    return "".join(out) + s[pos:]


def normalize(s: str) -> str:
    """Light, meaning-preserving LaTeX clean-up shared by every comparison path."""
    if not s.isascii():  # every _UNICODE key is non-ASCII
        for k, v in _UNICODE.items():
            s = s.replace(k, v)
    s = _strip_delims(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _THOUSANDS_SPACE_RE.sub(",", s)  # `1,\! 000`: thousands, even with a space after
    s = _SPACING_RE.sub(" ", s.replace("\\!", ""))  # `1,\!000`: a negative space joins
    s = _sqrt_parens(s)
    s = _SQRT_DIGIT_RE.sub(r"\\sqrt{\1}", s)
    s = FRAC_DIGITS_RE.sub(r"\\frac{\1}{\2}", s)
    s = _CONNECTIVE_RE.sub(", ", s)  # math-verify reads only plain `\text{ or }` as a list separator
    s = _TEXT_LETTER_RE.sub(lambda m: m.group(1) or m.group(2), s)  # math-verify would see text there
    s = _WHITESPACE_RE.sub(" ", s).strip()
    return s.rstrip(".").strip()


_TEXT_CMD_RE = re.compile(rf"\\({_TEXT_CMDS})\s*\{{")
_AFTER_UNIT_RE = re.compile(r"(?:\s|\^\{?-?\d\}?|[./]|\\cdot)*")


def stray_text(answer: str) -> str | None:
    """The first `\\text{...}` that is not the whole answer, trailing units or an "or"/"and" between list
    items, else None. math-verify drops such text *and what follows it*, so `\\frac12 \\text{ or perhaps }
    \\frac13` would be read as 1/2 and a hedge would pass."""
    groups = []
    for m in _TEXT_CMD_RE.finditer(answer):
        end = matching_brace(answer, m.end() - 1)
        if end < 0:
            return None  # unbalanced: check_bounds reports it
        groups.append((m.start(), end + 1, answer[m.end() : end], m.group(1)))
    for _start, end, content, _ in groups:
        if not content.strip():
            continue  # empty; single letters and "or"/"and" were rewritten by `normalize`
        after = answer[end:]
        for s2, e2, _, _ in reversed([g for g in groups if g[0] >= end]):
            after = after[: s2 - end] + after[e2 - end :]
        if not _AFTER_UNIT_RE.fullmatch(after):
            return content.strip()  # more math follows the text
    return None


_UNIT_TEXT_RE = re.compile(
    r"\s*(?:/|\\cdot)?\s*\\(?:text|textbf|textit|textsf|mbox|mathrm|mathit|textrm|textnormal|operatorname)"
    r"\s*\{\s*[A-Za-z][A-Za-z .]*\}"
    r"(?:\^\{?-?\d\}?)?\s*$"
)
_UNIT_WORDS_RE = re.compile(r"(?<=[\d}])\s+[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*\s*$")
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree)\s*$")
_CURRENCY = r"(?:\\\$|\$|€|£|¥|\\euro|\\pounds|\\yen|\\textsterling|\\texteuro|\\textyen)"
_CURRENCY_RE = re.compile(rf"^{_CURRENCY}\s*(?=[-+\d.\\])|(?<=[\d.}}])\s*{_CURRENCY}$")


def strip_units(s: str) -> str:
    """Drop trailing units: `\\text{ cm}^2`, `\\mathrm{m}`, ` apples` after a number, `^\\circ`. Never to empty.

    Done here rather than by math-verify, whose unit list holds single letters (m, s, t, h, g, ...) and so
    reads `3n + 2m` as `3n + 2`."""
    s = _CURRENCY_RE.sub("", s)
    for _ in range(3):
        stripped = _DEGREE_RE.sub("", _UNIT_WORDS_RE.sub("", _UNIT_TEXT_RE.sub("", s))).strip()
        if not stripped or stripped == s:
            break
        s = stripped
    return s
