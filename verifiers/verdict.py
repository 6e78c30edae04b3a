"""The one result type shared by every verifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "no_answer", "parse_error", "timeout", "error"]

# Only these outcomes are rewards; the others are infrastructure failures that callers count, not score.
REWARD_STATUSES: frozenset[str] = frozenset({"ok", "no_answer"})


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one completion.

    score: the reward in [0, 1] (0.0 for every non-`ok` status).
    status: `ok` (graded; score says right or wrong), `no_answer` (nothing to grade was found: a reward of 0),
        `parse_error` / `timeout` / `error` (the verifier could not decide: not a reward).
    extracted: the answer or program the verifier graded, if any.
    detail: a short human-readable reason.
    """

    score: float
    status: Status
    extracted: str | None = None
    detail: str = ""

    @property
    def is_reward(self) -> bool:
        """True when `score` is a real reward (status `ok` or `no_answer`)."""
        return self.status in REWARD_STATUSES
