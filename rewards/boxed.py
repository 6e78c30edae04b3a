"""Exact-match reward for integer answers written in `\\boxed{}` (the arithmetic task)."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\{\s*([-+]?(?:\d{1,3}(?:,\d{3})+|\d+))\s*\}")


def last_boxed_int(text: str) -> int | None:
    """The integer in the last `\\boxed{N}` of `text` (commas allowed as thousands separators), or None."""
    matches = _BOXED.findall(text)
    if not matches:
        return None
    return int(matches[-1].replace(",", ""))


def boxed_int_match(prompts: list, completions: list, answer: list, **_: object) -> list[float]:
    """1.0 when the last `\\boxed{}` of the completion holds exactly the integer `answer`, else 0.0.

    Needs the dataset column `answer`. Chat completions (message lists) are graded on the last message.
    """
    scores = []
    for completion, expected in zip(completions, answer, strict=True):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        got = last_boxed_int(text)
        scores.append(1.0 if got is not None and got == int(expected) else 0.0)
    return scores


def boxed_format(prompts: list, completions: list, **_: object) -> list[float]:
    """1.0 when the completion ends its answer with exactly one `\\boxed{<integer>}`, else 0.0.

    A shaping reward: it gives signal before the policy gets answers right (sparse exact-match rewards on a
    small model can be 0 for every sample of the first steps) and penalises hedging with several boxes.
    """
    scores = []
    for completion in completions:
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        scores.append(1.0 if len(_BOXED.findall(text)) == 1 and text.count("\\boxed") == 1 else 0.0)
    return scores
