"""A reward a tiny random model can learn in a dozen steps: the fraction of digit characters it writes."""


def digit_fraction(prompts, completions, **columns):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
