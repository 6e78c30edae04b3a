"""The instruction-following built-in (`instructions`): every constraint type on hand-made texts."""

from __future__ import annotations

import json

import pytest

from rewards import BUILTINS
from rewards.ifeval import CONSTRAINTS, check_constraint

# (constraint, a text that satisfies it, a text that does not)
CASES = [
    ({"type": "word_count", "min": 3, "max": 5}, "one two three four", "one two"),
    ({"type": "sentence_count", "max": 2}, "First one. Second one!", "One. Two. Three?"),
    ({"type": "paragraph_count", "min": 2, "max": 2}, "Para one.\n\nPara two.", "Only one paragraph.\nStill it."),
    ({"type": "keywords", "include": ["ocean", "Blue"]}, "The blue ocean.", "The blue sea."),
    ({"type": "forbidden_words", "words": ["very"]}, "Every day is good.", "It is very good."),
    ({"type": "keyword_frequency", "word": "yes", "min": 2}, "Yes, yes.", "yes, eyes."),
    ({"type": "json_format"}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    ({"type": "lowercase"}, "all quiet here.", "Not quiet."),
    ({"type": "uppercase"}, "LOUD NOISES!", "Loud noises"),
    ({"type": "start_phrase", "phrase": "Dear team"}, "dear team, hello", "Hello, dear team"),
    ({"type": "end_phrase", "phrase": "Any other questions?"}, "That is all. Any other questions?",
     "Any other questions? That is all."),
    ({"type": "no_commas"}, "No commas here.", "Well, one."),
    ({"type": "title"}, "<<A Poem>>\nRoses.", "A Poem\nRoses."),
    ({"type": "bullet_count", "n": 2}, "* one\n- two", "* one\n* two\n* three"),
    ({"type": "placeholders", "min": 2}, "Send it to [name] at [address].", "Send it to [name]."),
    ({"type": "quotation"}, '"Quoted."', 'Not "quoted".'),
    ({"type": "highlighted_sections", "min": 1}, "This is *important*.", "Nothing stands out."),
    ({"type": "postscript"}, "Bye.\nP.S. See you.", "Bye. See you."),
]


def test_every_constraint_type_has_a_case() -> None:
    assert {c["type"] for c, _, _ in CASES} == set(CONSTRAINTS)


@pytest.mark.parametrize("constraint,good,bad", CASES, ids=[c["type"] for c, _, _ in CASES])
def test_constraint(constraint: dict, good: str, bad: str) -> None:
    assert check_constraint(good, constraint) is True
    assert check_constraint(bad, constraint) is False


def test_instructions_reward_per_row_all_or_fraction() -> None:
    rows = [[{"type": "lowercase"}, {"type": "word_count", "max": 3}],
            json.dumps([{"type": "lowercase"}, {"type": "word_count", "max": 3}]),
            None]
    completions = ["<think>Plan It Out</think>just three words", "Too Many Words Here", "anything"]
    f = BUILTINS["instructions"]
    assert f(prompts=["p"] * 3, completions=completions, constraints=rows) == [1.0, 0.0, None]
    got = f(prompts=["p"] * 3, completions=completions, constraints=rows, scoring="fraction")
    assert got == [1.0, 0.0, None]
    assert f(prompts=["p"], completions=["Four Words Right Here"], constraints=rows[:1], scoring="fraction") == [0.0]
    assert f(prompts=["p"], completions=["four words right here"], constraints=rows[:1], scoring="fraction") == [0.5]
    # still thinking: no answer, every constraint fails (also when the chat template opened <think> itself)
    assert f(prompts=["p"], completions=["<think>lowercase"], constraints=rows[:1]) == [0.0]
    opened = ["<|im_start|>assistant\n<think>\n"]
    assert f(prompts=["p"], completions=["still lowercase"], constraints=rows[:1], rendered_prompt=opened) == [0.0]
    assert f(prompts=["p"], completions=["Plan</think>ok now"], constraints=rows[:1], rendered_prompt=opened) == [1.0]
    fixed = f(prompts=["p"] * 2, completions=["ok", "OK"], constraints_column=None,
              fixed_constraints=[{"type": "lowercase"}])
    assert fixed == [1.0, 0.0]


def test_bad_constraints_are_errors_naming_them() -> None:
    with pytest.raises(ValueError, match="unknown constraint type 'lowercas'"):
        check_constraint("x", {"type": "lowercas"})
    with pytest.raises(ValueError, match="bad parameters"):
        check_constraint("x", {"type": "word_count", "maximum": 3})
