"""A reward a tiny random model can learn in a dozen steps: the fraction of digit characters it writes."""


def digit_fraction(prompts, completions, **columns):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


def digit_fraction_unless_answer_is_3_mod_4(prompts, completions, answer, **columns):
    """`digit_fraction`, but always 0 for a quarter of the prompts: their groups never vary, so every step has
    groups that dynamic sampling must drop and refill (a step draws 4 of the 64 prompts: P(none) ≈ 0.32)."""
    return [0.0 if a % 4 == 3 else r for a, r in zip(answer, digit_fraction(prompts, completions))]


def digit_fraction_grader_down_every_4th(prompts, completions, **columns):
    """`digit_fraction`, but the "grader" fails on every 4th completion (as a judge outage would)."""
    from rewards import Failed

    scores = digit_fraction(prompts, completions)
    return [Failed("grader unavailable") if i % 4 == 3 else s for i, s in enumerate(scores)]


def grader_down(prompts, completions, **columns):
    """A grader that fails on every completion."""
    from rewards import Failed

    return [Failed("grader unavailable")] * len(completions)


def broken(prompts, completions, **columns):
    """A user reward with a bug."""
    return [len(c) / 0 for c in completions]


def rendered_with_marker(prompts, completions, rendered_prompt, **columns):
    """1 where the prompt was rendered with a system prompt containing `MARKER`, else 0 (whatever the model wrote):
    tells which system prompt each held-out set was rendered with."""
    return [float("MARKER" in p) for p in rendered_prompt]
