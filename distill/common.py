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
    from rl.grpo import reward_specs, weighted_rewards

    specs = reward_specs(reward_cfgs, row_sets)
    return weighted_rewards(specs), specs[0].label


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
