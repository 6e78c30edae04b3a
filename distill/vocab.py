"""The teacher must share the student's vocabulary: distillation compares the two distributions token id by
token id, so a different tokenizer makes every number meaningless. Checked from tokenizer files and
`config.json` only (no weights), before any model loads."""

from __future__ import annotations

from typing import Any


class VocabularyMismatch(ValueError):
    """Student and teacher tokenizers (or output-layer sizes) differ."""


def check_same_vocabulary(student_path: str, teacher_path: str) -> None:
    """Raise `VocabularyMismatch` naming the first difference between the two models' vocabularies.

    Paths are anything `from_pretrained` accepts (local directories, checkpoints of a run, hub ids). Compared:
    token → id maps (added tokens included), the EOS token, and the output-layer width `vocab_size` in config.json
    (padding rows differ between some checkpoints of the same tokenizer, and the logits must line up)."""
    from transformers import AutoConfig, AutoTokenizer

    student_tok = AutoTokenizer.from_pretrained(student_path)
    teacher_tok = AutoTokenizer.from_pretrained(teacher_path)
    names = f"student {student_path!r} and teacher {teacher_path!r}"
    fix = "the teacher must use the student's tokenizer (distillation compares their distributions token by token)"
    problem = vocabulary_difference(student_tok.get_vocab(), teacher_tok.get_vocab())
    if problem:
        raise VocabularyMismatch(f"{names} do not share a vocabulary: {problem}; {fix}")
    if student_tok.eos_token != teacher_tok.eos_token:
        raise VocabularyMismatch(f"{names} end sequences differently: EOS {student_tok.eos_token!r} vs "
                                 f"{teacher_tok.eos_token!r}; {fix}")
    student_v = _output_width(AutoConfig.from_pretrained(student_path))
    teacher_v = _output_width(AutoConfig.from_pretrained(teacher_path))
    if student_v != teacher_v:
        raise VocabularyMismatch(f"{names} share a tokenizer but their output layers differ: vocab_size "
                                 f"{student_v} vs {teacher_v} in config.json; the logits must have the same width")


def vocabulary_difference(student: dict[str, int], teacher: dict[str, int]) -> str | None:
    """A readable description of the first difference between two token → id maps, or None if equal."""
    if student == teacher:
        return None
    if len(student) != len(teacher):
        head = f"{len(student)} vs {len(teacher)} tokens"
    else:
        head = f"both {len(student)} tokens"
    student_ids = {i: t for t, i in student.items()}
    teacher_ids = {i: t for t, i in teacher.items()}
    for i in sorted(student_ids.keys() | teacher_ids.keys()):
        if student_ids.get(i) != teacher_ids.get(i):
            return f"{head}; id {i} is {student_ids.get(i)!r} for the student and {teacher_ids.get(i)!r} for the teacher"
    return head  # equal id sets and tokens per id: two token strings share an id in one of them


def _output_width(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.vocab_size)
