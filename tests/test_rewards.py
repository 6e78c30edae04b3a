"""The reward contract: loading user functions, async + sync concurrency, None and errors in the weighted sum,
TRL-style functions unchanged, failures that name the reward / sample / prompt, checks before any model loads."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import pytest

from rewards import (
    BUILTINS,
    Failed,
    RewardError,
    RewardSpec,
    WeightedRewards,
    build_spec,
    call_reward,
    load_reward_fn,
)
from rl.config import GRPOConfig
from rl.config_io import ConfigError, load_config

PROMPTS = ["What is 1 + 1?", "What is 2 + 2?", "Name a colour."]
COMPLETIONS = ["\\boxed{2}", "\\boxed{5}", "blue"]
COLUMNS = {"answer": ["2", "4", None], "step": 3, "completion_ids": [[1], [2, 3], [4, 5, 6]]}


def _user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_reward.py"
    path.write_text(
        "def length_bonus(prompts, completions, scale=1.0, **columns):\n"
        "    return [scale * len(c) for c in completions]\n"
        "def not_a_reward(x):\n"
        "    return x\n"
    )
    return path


def test_user_function_from_a_file(tmp_path: Path) -> None:
    path = _user_file(tmp_path)
    spec = build_spec(fn=f"{path}:length_bonus", kwargs={"scale": 0.5})
    assert spec.label == "length_bonus"
    totals, metrics = WeightedRewards([spec])(PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [4.5, 4.5, 2.0]
    assert metrics["reward/length_bonus/mean"] == pytest.approx(11 / 3)


def test_user_function_from_a_module_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scoring.py").write_text("def has_blue(prompts, completions, **kw):\n"
                                    "    return [1.0 if 'blue' in c else 0.0 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    func = load_reward_fn(fn="mypkg.scoring:has_blue")
    assert call_reward(func, PROMPTS, COMPLETIONS, COLUMNS) == [0.0, 0.0, 1.0]


def test_bad_references_fail_with_the_reason(tmp_path: Path) -> None:
    path = _user_file(tmp_path)
    cases = {
        f"{tmp_path}/nope.py:f": "file .* not found",
        "no_such_module_xyz:f": "cannot import module 'no_such_module_xyz'",
        f"{path}:missing": "has no function 'missing'",
        f"{path}:not_a_reward": r"must accept \(prompts, completions, \*\*columns\)",
        "justaname": "must look like `package.module:function`",
    }
    for ref, message in cases.items():
        with pytest.raises(ValueError, match=message):
            build_spec(fn=ref)
    with pytest.raises(ValueError, match="unknown reward name 'maht' — did you mean 'math'"):
        build_spec(name="maht")
    with pytest.raises(ValueError, match="reward 'math' has no option 'reference_colum' — did you mean 'reference_column'"):
        build_spec(name="math", kwargs={"reference_colum": "solution"})


def test_needed_columns_are_checked_against_the_data() -> None:
    spec = build_spec(name="math", kwargs={"reference_column": "solution"})
    assert spec.needs_columns == ("solution",)
    with pytest.raises(ValueError, match="needs the dataset column 'solution'.*columns: answer"):
        spec.check_columns({"answer", "step"})
    assert build_spec(name="boxed_int").needs_columns == ("answer",)  # a required named parameter


def test_async_rewards_run_concurrently_and_sync_ones_in_parallel_threads() -> None:
    # Each reward waits for the other to have started: run one after the other, they would deadlock.
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def reward_a(prompts, completions, **kw):
        a_started.set()
        await asyncio.wait_for(b_started.wait(), timeout=30)
        return [1.0] * len(completions)

    async def reward_b(prompts, completions, **kw):
        b_started.set()
        await asyncio.wait_for(a_started.wait(), timeout=30)
        return [2.0] * len(completions)

    barrier = threading.Barrier(2, timeout=30)

    def sync_c(prompts, completions, **kw):
        barrier.wait()
        return [0.5] * len(completions)

    def sync_d(prompts, completions, **kw):
        barrier.wait()
        return [0.25] * len(completions)

    specs = [RewardSpec("a", reward_a), RewardSpec("b", reward_b), RewardSpec("c", sync_c), RewardSpec("d", sync_d)]
    totals, _ = WeightedRewards(specs)(PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [3.75] * 3


def test_none_is_left_out_of_the_weighted_sum_and_failed_leaves_the_sample_unscored() -> None:
    def math_like(prompts, completions, answer, **kw):
        return [None if a is None else float(c == f"\\boxed{{{a}}}") for c, a in zip(completions, answer)]

    def flaky(prompts, completions, **kw):
        return [0.5, Failed("grader timed out"), None]

    rewards = WeightedRewards([RewardSpec("m", math_like, weight=2.0), RewardSpec("f", flaky, weight=1.0)])
    totals, metrics = rewards(PROMPTS, COMPLETIONS, COLUMNS)
    # sample 1: `flaky` failed to grade it → unscored (None, never 0); sample 2: no reward applies → 0
    assert totals == [2.5, None, 0.0] and metrics["reward/unscored_frac"] == pytest.approx(1 / 3)
    assert metrics["reward/m/mean"] == 0.5 and metrics["reward/m/none_rate"] == pytest.approx(1 / 3)
    assert metrics["reward/m/errors"] == 0
    assert metrics["reward/f/mean"] == 0.5 and metrics["reward/f/none_rate"] == pytest.approx(2 / 3)
    assert metrics["reward/f/errors"] == 1
    assert metrics["reward/f/time_s"] >= 0


def test_all_none_gives_nan_mean_not_zero() -> None:
    totals, metrics = WeightedRewards([RewardSpec("n", lambda prompts, completions, **kw: [None] * 3)])(
        PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [0.0] * 3 and math.isnan(metrics["reward/n/mean"]) and metrics["reward/n/none_rate"] == 1.0


def test_trl_style_function_unchanged() -> None:
    # Verbatim from TRL's GRPO documentation: keyword arguments, no `prompts` parameter, log_metric and
    # trainer_state available as in TRL.
    def reward_len(completions, **kwargs):
        return [-abs(20 - len(completion)) for completion in completions]

    def format_reward(completions, log_metric=None, trainer_state=None, **kwargs):
        log_metric("step_seen", trainer_state.global_step)
        return [1.0 if c.startswith("\\boxed") else 0.0 for c in completions]

    rewards = WeightedRewards([RewardSpec("len", reward_len), RewardSpec("fmt", format_reward)])
    totals, metrics = rewards(PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [-20 + 9 + 1, -20 + 9 + 1, -20 + 4]
    assert metrics["reward/fmt/step_seen"] == 3
    assert build_spec(fn="tests.toy_reward:digit_fraction").label == "digit_fraction"


def test_a_raising_reward_names_reward_sample_and_prompt() -> None:
    def picky(prompts, completions, answer, **kw):
        return [float(int(a) == 2) for a in answer]  # int(None) fails on sample 2

    with pytest.raises(RewardError, match=r"reward 'picky' failed on sample 2 \(prompt: 'Name a colour.'\): TypeError"):
        WeightedRewards([RewardSpec("picky", picky)])(PROMPTS, COMPLETIONS, COLUMNS)
    totals, metrics = WeightedRewards([RewardSpec("picky", picky, on_error="skip")])(PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [1.0, 0.0, None] and metrics["reward/picky/errors"] == 1
    assert metrics["reward/picky/none_rate"] == pytest.approx(1 / 3)


def test_outputs_outside_the_contract_are_failures() -> None:
    def short(prompts, completions, **kw):
        return [1.0]

    def nan(prompts, completions, **kw):
        return [1.0, float("nan"), 0.0]

    async def async_raises(prompts, completions, **kw):
        if len(completions) == 1 and completions[0] == "blue":
            raise KeyError("colour")
        return [1.0] * len(completions) if len(completions) == 1 else 1 / 0

    with pytest.raises(RewardError, match="failed on the batch of 3 samples but on no single sample.*returned 1 values"):
        WeightedRewards([RewardSpec("short", short)])(PROMPTS, COMPLETIONS, COLUMNS)
    with pytest.raises(RewardError, match=r"reward 'nan' failed on sample 1 .*returned nan"):
        WeightedRewards([RewardSpec("nan", nan)])(PROMPTS, COMPLETIONS, COLUMNS)
    totals, metrics = WeightedRewards([RewardSpec("ar", async_raises, on_error="skip")])(PROMPTS, COMPLETIONS, COLUMNS)
    assert totals == [1.0, 1.0, None] and metrics["reward/ar/errors"] == 1


def test_numpy_arrays_and_tensors_are_rewards_as_in_trl() -> None:
    import numpy as np
    import torch

    for make in (np.array, torch.tensor):
        totals, _ = WeightedRewards([RewardSpec("arr", lambda prompts, completions, make=make, **kw: make([1.0, 0.5, 0.0]))])(
            PROMPTS, COMPLETIONS, COLUMNS)
        assert totals == [1.0, 0.5, 0.0]


def test_a_reward_that_never_returns_leaves_the_batch_unscored_after_its_timeout() -> None:
    import time

    def stuck(prompts, completions, **kw):
        time.sleep(30)
        return [1.0] * len(completions)

    async def stuck_async(prompts, completions, **kw):
        import asyncio

        await asyncio.sleep(30)

    for fn in (stuck, stuck_async):
        start = time.perf_counter()
        totals, metrics = WeightedRewards([RewardSpec("stuck", fn, timeout_s=0.5)])(PROMPTS, COMPLETIONS, COLUMNS)
        assert time.perf_counter() - start < 5
        assert totals == [None] * 3 and metrics["reward/stuck/errors"] == 3 and metrics["reward/unscored_frac"] == 1


def test_duplicate_labels_are_refused() -> None:
    spec = build_spec(name="format")
    with pytest.raises(ValueError, match="two rewards are labelled 'format'.*label:"):
        WeightedRewards([spec, build_spec(name="format", weight=0.5)])


def test_config_needs_exactly_one_source(make_config) -> None:
    path = make_config()
    with pytest.raises(ConfigError, match="exactly one of `name:`.*got name, fn"):
        load_config(GRPOConfig, path, ["rewards=[{name: math, fn: 'a.b:c'}]"])
    with pytest.raises(ConfigError, match="judge needs exactly one of `base_url:`"):
        load_config(GRPOConfig, path, ["rewards=[{judge: {model: m}}]"])
    with pytest.raises(ConfigError, match="rewards.0.on_error"):
        load_config(GRPOConfig, path, ["rewards=[{name: math, on_error: ignore}]"])
    cfg = load_config(GRPOConfig, path, ["rewards=[{judge: {base_url: 'http://h/v1', model: m}, weight: 0.5}]"])
    assert cfg.rewards[0].judge.reference_column == "answer" and cfg.rewards[0].weight == 0.5


def test_preflight_fails_before_any_model_loads(make_config) -> None:
    from rl.grpo import preflight

    path = make_config()
    for override, message in [
        ("rewards=[{name: math, kwargs: {reference_column: solution}}]", "rewards.0: reward 'math' needs the dataset column 'solution'"),
        ("rewards=[{name: format}, {name: format}]", "two rewards are labelled 'format'"),
        ("rewards=[{model: {path: /no/such/rm}}]", "rewards.0: reward model path '/no/such/rm' is not a model directory"),
        ("rewards=[{judge: {base_url: 'http://h/v1', model: m, api_key_env: NO_SUCH_KEY_VAR_XYZ}}]",
         "rewards.0: judge.api_key_env: environment variable 'NO_SUCH_KEY_VAR_XYZ' is not set"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            preflight(load_config(GRPOConfig, path, [override]))
    inputs = preflight(load_config(GRPOConfig, path, ["rewards=[{name: math}, {name: format, weight: 0.2}]"]))
    assert [s.label for s in inputs.rewards.specs] == ["math", "format"]


def test_every_builtin_is_documented_and_checked() -> None:
    for name, func in BUILTINS.items():
        assert func.__doc__, name
        build_spec(name=name)  # signature and option checks pass with defaults


def test_the_custom_reward_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from rl.grpo import preflight

    root = Path(__file__).parents[1]
    monkeypatch.chdir(root)  # the example's paths are relative to the repository root, as in its README
    inputs = preflight(load_config(GRPOConfig, "examples/custom_reward/config.yaml"))
    assert [s.label for s in inputs.rewards.specs] == ["math", "shows_the_sum", "overlong"]
    spec = inputs.rewards.specs[1]
    completions = ["7 + 4 = 11, so \\boxed{11}", "7 + 4 = 12", "\\boxed{11}", "7 + 4 = 11 and 1 + 1 = 3", "x"]
    got = call_reward(spec.func, ["q"] * 5, completions, {"a": [7, 7, 7, 7, None], "b": [4, 4, 4, 4, None]})
    assert got == [1.0, 0.0, 0.0, 0.0, None]
