"""Instruction-following reward: verifiable constraints on the response (IFEval-style), standard library only.

A row's constraints are a list of `{"type": ..., **params}` dicts (or its JSON text), e.g.
`[{"type": "word_count", "max": 50}, {"type": "keywords", "include": ["ocean"]}, {"type": "lowercase"}]`.
Constraints are checked on the answer (the text after `</think>`; a completion still thinking scores 0).

Types (params): word_count / sentence_count / paragraph_count (min, max); keywords (include: [words]);
forbidden_words (words: [words]); keyword_frequency (word, min, max); json_format; lowercase; uppercase;
start_phrase (phrase); end_phrase (phrase); no_commas; title (a `<<title>>`); bullet_count (n: exact number of
`* ` / `- ` bullet lines); placeholders (min: `[name]` slots); quotation (wrapped in double quotes);
highlighted_sections (min: `*highlighted*` spans); postscript (marker, default `P.S.`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from rewards.text import answer_part, completion_text

_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.M)
_FENCED_JSON = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S | re.I)


def _within(n: int, min: int | None = None, max: int | None = None) -> bool:  # noqa: A002 - config names
    return (min is None or n >= min) and (max is None or n <= max)


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+(?:'\w+)?\b", text)


def _count_word(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, re.I))


def _json_ok(text: str) -> bool:
    body = text.strip()
    fenced = _FENCED_JSON.match(body)
    try:
        json.loads(fenced.group(1) if fenced else body)
    except json.JSONDecodeError:
        return False
    return True


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n|^\s*\*\*\*\s*$", text.strip(), flags=re.M) if p and p.strip()]


CONSTRAINTS: dict[str, Callable[..., bool]] = {
    "word_count": lambda t, min=None, max=None: _within(len(_words(t)), min, max),
    "sentence_count": lambda t, min=None, max=None: _within(len(_SENTENCE_END.findall(t.strip())), min, max),
    "paragraph_count": lambda t, min=None, max=None: _within(len(_paragraphs(t)), min, max),
    "keywords": lambda t, include: all(_count_word(t, w) > 0 for w in include),
    "forbidden_words": lambda t, words: not any(_count_word(t, w) > 0 for w in words),
    "keyword_frequency": lambda t, word, min=None, max=None: _within(_count_word(t, word), min, max),
    "json_format": lambda t: _json_ok(t),
    "lowercase": lambda t: t == t.lower() and any(c.isalpha() for c in t),
    "uppercase": lambda t: t == t.upper() and any(c.isalpha() for c in t),
    "start_phrase": lambda t, phrase: t.strip().lower().startswith(phrase.strip().lower()),
    "end_phrase": lambda t, phrase: t.strip().lower().endswith(phrase.strip().lower()),
    "no_commas": lambda t: "," not in t,
    "title": lambda t: re.search(r"<<[^\n<>]+>>", t) is not None,
    "bullet_count": lambda t, n: len(_BULLET.findall(t)) == n,
    "placeholders": lambda t, min=1: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= min,
    "quotation": lambda t: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"',
    "highlighted_sections": lambda t, min=1: len(re.findall(r"\*[^\n*]+\*", t)) >= min,
    "postscript": lambda t, marker="P.S.": re.search(rf"^\s*{re.escape(marker)}", t, re.M) is not None,
}


def check_constraint(text: str, constraint: dict) -> bool:
    """Whether `text` satisfies one constraint dict; ValueError for an unknown type or bad parameters."""
    if not isinstance(constraint, dict) or "type" not in constraint:
        raise ValueError(f"constraint {constraint!r} must be a dict with a `type`")
    params = {k: v for k, v in constraint.items() if k != "type"}
    check = CONSTRAINTS.get(constraint["type"])
    if check is None:
        raise ValueError(f"unknown constraint type {constraint['type']!r} (known: {', '.join(sorted(CONSTRAINTS))})")
    try:
        return bool(check(text, **params))
    except TypeError as e:
        raise ValueError(f"constraint {constraint!r}: bad parameters ({e})") from None


def instructions(
    prompts: list, completions: list, *, constraints_column: str | None = "constraints",
    fixed_constraints: list[dict] | None = None, scoring: Literal["all", "fraction"] = "all",
    rendered_prompt: list[str] | None = None, **columns: Any,
) -> list[float | None]:
    """1.0 when the answer satisfies every constraint of its row (`scoring: fraction`: the share satisfied);
    None for rows without constraints.

    constraints_column: the dataset column with each row's constraint list (or its JSON text).
    fixed_constraints: one list for every row instead (then set `constraints_column: null`).
    """
    if (fixed_constraints is None) == (constraints_column is None):
        raise ValueError("instructions needs exactly one of `constraints_column` or `fixed_constraints`")
    per_row = columns[constraints_column] if constraints_column else [fixed_constraints] * len(completions)
    out: list[float | None] = []
    rendered = rendered_prompt or [None] * len(completions)
    for completion, row, prompt in zip(completions, per_row, rendered):
        row = json.loads(row) if isinstance(row, str) else row
        if not row:
            out.append(None)
            continue
        answer = answer_part(completion_text(completion), prompt)
        passed = [check_constraint(answer, c) if answer is not None else False for c in row]
        out.append(float(all(passed)) if scoring == "all" else sum(passed) / len(passed))
    return out
