"""Shared fixtures: a tiny random Qwen3 checkpoint and a small prompt set for end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rl.models import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 chat prompts with an `answer` column."""
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with path.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"Count to {i}"}], "answer": i}) + "\n")
    return path


@pytest.fixture
def make_config(tmp_path: Path, tiny_model: Path, toy_data: Path):
    """`make_config(**sections)` writes a YAML config for a short GRPO run on the tiny model with the learnable
    toy reward (sections are merged over the defaults) and returns its path."""
    return lambda **sections: _write_config(tmp_path, tiny_model, toy_data, **sections)


def _write_config(tmp_path: Path, tiny_model: Path, toy_data: Path, **sections: dict) -> Path:
    import yaml

    cfg = {
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(tiny_model)},
        "data": {"train": str(toy_data), "prompts_per_step": 4},
        "rollout": {"backend": "hf", "n": 8, "max_new_tokens": 16, "kv_cache_gib": 0.25},
        "trainer": {"max_steps": 12, "lr": 2e-2, "micro_batch_size": 16, "save_every": 4},
        "rewards": [{"fn": f"{TESTS / 'toy_reward.py'}:digit_fraction"}],
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
