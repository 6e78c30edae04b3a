"""Rejection sampling for SFT, written once: sampled candidates per prompt → SFT rows
`{"messages": [...prompt messages..., {"role": "assistant", "content": <candidate text>}]}`, kept by rules the
caller sets (`KeepRules`). Pure: no model, no files.

Used by `python -m rl.datatools rejection` (verified by the primary reward, finished, well formed for the prompt's
mode, distinct, at most `max_per_prompt` per prompt; rows also carry `mode` and `reward`) and by
`distill.offpolicy`'s generation stage (finished unless `keep_truncated`, weighted reward ≥ `min_reward`).

A candidate passes, in this order: the reward threshold (`rewarded`), finished, well formed (`accepted` counts
those that pass all three); then, per prompt in sampling order, distinct and within `max_per_prompt` → a row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rl.eval.mode_following import follows_mode


@dataclass(frozen=True)
class Candidate:
    """One sampled response to a prompt."""

    text: str
    """The assistant's response as the row will carry it (the chat template's pre-fill included)."""
    finish_reason: str
    """`stop` or `length` (cut at the token limit)."""
    reward: float | None = None
    """The value the threshold compares; None: not scored (never passes a threshold)."""


@dataclass(frozen=True)
class KeepRules:
    """Which candidates become SFT rows."""

    min_reward: float | None = None
    """Keep a candidate only when its reward is ≥ this; None: no threshold."""
    require_finished: bool = True
    """Drop candidates cut at the token limit (`finish_reason == "length"`)."""
    well_formed: bool = False
    """Drop candidates not well formed for their prompt's mode (`well_formed`)."""
    distinct: bool = False
    """Keep each text at most once per prompt."""
    max_per_prompt: int | None = None
    """Keep at most this many candidates per prompt (the first ones, in sampling order); None: all."""
    annotate: bool = False
    """Rows also carry the prompt's `mode` and the candidate's `reward`."""


@dataclass
class Selection:
    """The SFT rows, and how many candidates each rule let through."""

    rows: list[dict]
    samples: int
    """Candidates in all."""
    rewarded: int
    """Candidates that pass the reward threshold (all of them without one)."""
    accepted: int
    """Of those, the ones that are also finished (if required) and well formed (if checked)."""
    rows_per_mode: dict[str, int]
    """Rows by their prompt's mode."""
    prompts_without_row: int


def select_sft_rows(conversations: list[list[dict]], modes: list[str], candidates: list[list[Candidate]],
                    rules: KeepRules) -> Selection:
    """SFT rows from `candidates[prompt][sample]`, prompt i being the chat messages `conversations[i]` in chat
    mode `modes[i]` (`think`, `no_think` or `off`), in prompt then sampling order."""
    rows: list[dict] = []
    rewarded = accepted = without_row = 0
    per_mode: Counter[str] = Counter()
    for messages, mode, group in zip(conversations, modes, candidates, strict=True):
        kept: list[str] = []
        for c in group:
            if rules.min_reward is not None and (c.reward is None or c.reward < rules.min_reward):
                continue
            rewarded += 1
            if rules.require_finished and c.finish_reason == "length":
                continue
            if rules.well_formed and not well_formed(c.text, mode):
                continue
            accepted += 1
            if (rules.distinct and c.text in kept) or (rules.max_per_prompt is not None
                                                       and len(kept) >= rules.max_per_prompt):
                continue
            kept.append(c.text)
            row = {"messages": [*messages, {"role": "assistant", "content": c.text}]}
            rows.append({**row, "mode": mode, "reward": c.reward} if rules.annotate else row)
            per_mode[mode] += 1
        without_row += not kept
    return Selection(rows, sum(map(len, candidates)), rewarded, accepted, dict(per_mode), without_row)


def well_formed(text: str, mode: str) -> bool:
    """Right mode (`follows_mode`), exactly one think block (a chat template splits reasoning from answer at
    `</think>`, so a second one would eat the answer when the row is rendered for SFT), and a non-blank answer
    after it."""
    one_block = text.count("<think>") == 1 and text.count("</think>") == 1
    return one_block and follows_mode(text, mode == "think") and bool(text.partition("</think>")[2].strip())
