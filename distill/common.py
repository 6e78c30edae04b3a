"""Pre-flight shared by both distillation drivers: the student's and the teacher's paths and vocabulary."""

from __future__ import annotations

from rl.config_io import ConfigError


def check_student_teacher(student: str, teacher: str) -> tuple[str, str]:
    """Validate both model paths, make them loadable (aliases are fetched into the cache) and check that they
    share a vocabulary — tokenizer files and config.json only, no weights. Returns the resolved paths."""
    from distill.vocab import check_same_vocabulary
    from rl.models import check_model_path, resolve_model_path

    for key, path in (("student", student), ("teacher", teacher)):
        try:
            check_model_path(path)
        except ValueError as e:
            raise ConfigError(f"{key}.path: {e}") from None
    student_path, teacher_path = resolve_model_path(student), resolve_model_path(teacher)
    check_same_vocabulary(student_path, teacher_path)
    return student_path, teacher_path
