"""Rewards inside real GRPO runs (the CLI, Ray, the tiny Qwen3): a mix of built-ins and a user function with
per-reward metrics in metrics.jsonl, and a reward model trained with `python -m rewards.train_rm` on synthetic
preferences, checked on held-out pairs, then used as the reward."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
PER_REWARD = ("mean", "none_rate", "errors", "time_s")


def _grpo(config: Path) -> tuple[list[dict], str]:
    """The run's metrics records and its stderr."""
    out = subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = config.parent / "run"
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()], out.stderr


def _rise(records: list[dict], key: str) -> tuple[float, float]:
    return (sum(r[key] for r in records[:3]) / 3, sum(r[key] for r in records[-3:]) / 3)


def test_grpo_mixes_math_format_and_a_user_function(make_config) -> None:
    config = make_config(rewards=[
        {"name": "math", "kwargs": {"extract": ["boxed", "last_number"]}},
        {"name": "format", "weight": 0.2},
        {"fn": f"{TESTS / 'toy_reward.py'}:digit_fraction", "weight": 1.0},
    ])
    records, stderr = _grpo(config)
    assert [r["step"] for r in records] == list(range(1, 13))
    # The tiny random model's text can hold an answer the math verifier declines to grade (e.g. a digit string
    # over max_answer_chars: parse_error; one slow to parse: timeout), counted as an error, not a reward; nothing
    # else may fail.
    declined = [line for line in stderr.splitlines() if "not graded" in line]
    assert all(re.search(r"reward 'math'.*math verifier (parse_error|timeout)", line) for line in declined), declined
    clean = 0
    for r in records:
        for label in ("math", "format", "digit_fraction"):
            for stat in PER_REWARD:
                assert f"reward/{label}/{stat}" in r, (label, stat)
        for label in ("format", "digit_fraction"):
            assert r[f"reward/{label}/errors"] == 0 and r[f"reward/{label}/none_rate"] == 0.0
        if r["reward/math/errors"] or r["reward/math/none_rate"]:
            continue
        clean += 1
        # no None anywhere: the step reward is exactly the weighted sum of the per-reward means
        weighted = r["reward/math/mean"] + 0.2 * r["reward/format/mean"] + r["reward/digit_fraction/mean"]
        assert r["reward_mean"] == pytest.approx(weighted, abs=1e-5)
    assert clean >= 6, [(r["reward/math/errors"], r["reward/math/none_rate"]) for r in records]
    first, last = _rise(records, "reward/digit_fraction/mean")
    assert last > first + 0.2, [round(r["reward/digit_fraction/mean"], 3) for r in records]


def _pairs(n: int, seed: int) -> list[dict]:
    """Prefer the response that contains the number the prompt asks for (the toy data's prompts)."""
    rng = random.Random(seed)
    filler = "the answer is so I count first then final result".split()
    rows = []
    for _ in range(n):
        i = rng.randrange(64)
        j = rng.choice([k for k in range(64) if k != i])
        words = " ".join(rng.sample(filler, 3))
        rows.append({"prompt": [{"role": "user", "content": f"Count to {i}"}],
                     "chosen": f"{words} {i}", "rejected": f"{words} {j}"})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reward_model_trained_on_preferences_then_used_in_grpo(tiny_model: Path, make_config, tmp_path: Path) -> None:
    from rewards.reward_model import RewardModelReward
    from rewards.settings import RewardModelSettings

    train = _write_jsonl(tmp_path / "prefs.jsonl", _pairs(3000, seed=0))
    held_out = _pairs(200, seed=1)
    rm_dir = tmp_path / "rm"
    out = subprocess.run(
        [sys.executable, "-m", "rewards.train_rm", "--data", str(train), "--model", str(tiny_model),
         "--output", str(rm_dir), "--eval-data", str(_write_jsonl(tmp_path / "held_out.jsonl", held_out)),
         "--epochs", "4", "--lr", "2e-3", "--scheduler", "cosine", "--warmup-steps", "20", "--batch-size", "32",
         "--torch-threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "held-out pair accuracy" in out.stdout
    # the reward the RL run will use, on held-out pairs (chance: 0.5). Training is not bit-reproducible across
    # CPUs; this recipe measured 0.96-0.99 over seeds and tiny models here (2000 pairs: 0.88-0.99).
    reward = RewardModelReward(RewardModelSettings(path=str(rm_dir), actor=False))
    prompts = [r["prompt"] for r in held_out]
    chosen = reward(prompts, [[{"role": "assistant", "content": r["chosen"]}] for r in held_out])
    rejected = reward(prompts, [[{"role": "assistant", "content": r["rejected"]}] for r in held_out])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(held_out)
    assert accuracy >= 0.9
    assert json.loads((rm_dir / "eval.json").read_text())["pair_accuracy"] == pytest.approx(accuracy)

    # The same 4 prompts every step, so the per-step mean RM score is comparable across steps (with the whole
    # toy set, which 4 prompts a step draws moves the mean more than 12 steps of learning do).
    four = _write_jsonl(tmp_path / "four.jsonl", [{"prompt": [{"role": "user", "content": f"Count to {i}"}]}
                                                  for i in (3, 17, 42, 58)])
    config = make_config(data={"train": str(four)}, rewards=[{"model": {"path": str(rm_dir)}, "label": "rm"}],
                         trainer={"max_steps": 30, "save_every": 10})
    records, _ = _grpo(config)
    assert all(r["reward/rm/errors"] == 0 and r["reward/rm/none_rate"] == 0.0 for r in records)
    # The RM's scale is arbitrary (its reward spread measured 1.3 to 7 across RM seeds and CPUs), so the rise is a
    # z-score: the mean of the last 5 steps over the first 5, in standard errors of that difference under "no
    # learning" (each step averages the same 4 prompts x 8 samples, so only the spread within a prompt's group is
    # noise: `reward_group_std`; the batch's `reward_std` also holds the fixed spread between the 4 prompts, which
    # CI once found 3.1 "standard errors" of a clear rise, -2.35 -> 0.74). The rise starts at a random step (4 to 20
    # over seeds), so 20 steps were sometimes too few; over 30 steps, 4 RM/run seed pairs measured 9-74.
    k, samples = 5, 4 * 8
    first, last = (sum(r["reward/rm/mean"] for r in part) / k for part in (records[:k], records[-k:]))
    noise = (sum(r["reward_group_std"] ** 2 for r in records[:k]) / k) ** 0.5 * (2 / (k * samples)) ** 0.5
    assert last - first > 4 * noise, (noise, [round(r["reward/rm/mean"], 2) for r in records])
