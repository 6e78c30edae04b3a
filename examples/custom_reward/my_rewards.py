"""A reward defined in your own file, used by config.yaml here as
`fn: examples/custom_reward/my_rewards.py:shows_the_sum` (a path relative to where you run the command, or an
absolute one; `my_package.my_module:shows_the_sum` works the same for an importable module).

The contract is TRL's: keyword arguments `prompts`, `completions` (strings, or one-message lists for chat data)
and every dataset column of each sample's row (here `answer`, `a`, `b`, `digits`), plus `completion_ids`,
`step` and a few more from the driver; accept the rest with `**columns`. Return one float per completion, or
None where the reward does not apply (left out of the weighted sum). `async def` works too (awaited
concurrently with the other rewards).
"""

import re

_EQUATION = re.compile(r"(-?\d+)\s*\+\s*(-?\d+)\s*=\s*(-?\d+)")


def shows_the_sum(prompts, completions, a, b, **columns):
    """1.0 when the completion writes the addition out correctly (`7 + 4 = 11`), 0.0 when it writes it wrong or
    not at all; None for rows that are not additions (no `a`/`b`)."""
    scores = []
    for completion, x, y in zip(completions, a, b):
        if x is None or y is None:
            scores.append(None)
            continue
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        equations = [tuple(map(int, m)) for m in _EQUATION.findall(text)]
        scores.append(1.0 if (x, y, x + y) in equations and all(p + q == s for p, q, s in equations) else 0.0)
    return scores
