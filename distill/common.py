"""Pre-flight helpers shared by both drivers: model paths + vocabulary, reward functions, reward scoring."""

from __future__ import annotations

from typing import Any

from rl.config import RewardConfig
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


def build_rewards(reward_cfgs: list[RewardConfig], row_sets: list[list[dict]]) -> tuple[Any, str | None]:
    """(`rewards.WeightedRewards` or None when no reward is configured, the first reward's label). Each reward's
    columns are checked against every row set it will see; errors name `rewards.<i>`."""
    if not reward_cfgs:
        return None, None
    from rewards import DRIVER_COLUMNS, WeightedRewards, build_spec

    columns = [(set().union(*rows) - {"prompt"}) | DRIVER_COLUMNS for rows in row_sets if rows]
    specs = []
    for i, r in enumerate(reward_cfgs):
        try:
            spec = build_spec(name=r.name, fn=r.fn, judge=r.judge, model=r.model, weight=r.weight,
                              kwargs=r.kwargs, on_error=r.on_error, label=r.label, worker=r.worker)
            for available in columns:
                spec.check_columns(available)
        except ValueError as e:
            raise ConfigError(f"rewards.{i}: {e}") from None
        specs.append(spec)
    try:
        return WeightedRewards(specs), specs[0].label
    except ValueError as e:
        raise ConfigError(f"rewards: {e}") from None


def score_texts(rewards: Any, rows: list[dict], texts: list[str], completion_ids: list[list[int]],
                rendered: list[str], step: int, max_completion_tokens: int) -> tuple[list[float], dict]:
    """Call the rewards with the contract's arguments (as `rl.grpo` does): row k belongs to completion k."""
    prompts = [r["prompt"] for r in rows]
    # TRL convention: chat prompts get chat completions (a one-message list), string prompts get strings.
    comps = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]
    names = dict.fromkeys(k for r in rows for k in r if k != "prompt")
    columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in names}
    columns.update(completion_ids=completion_ids, step=step, rendered_prompt=rendered,
                   max_completion_tokens=max_completion_tokens)
    return rewards(prompts, comps, columns)
