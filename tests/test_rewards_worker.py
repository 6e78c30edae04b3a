"""`worker: true`: a name/fn reward runs in a Ray worker process of its own, with the same results, errors
(naming the sample) and `Failed` outcomes as in the driver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rewards import RewardError, WeightedRewards, build_spec
from rewards.settings import RewardModelSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_worker_reward_runs_in_another_process(ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r.py").write_text(
        "import os\n"
        "from rewards import Failed\n"
        "def pid(prompts, completions, **kw):\n"
        "    return [float(os.getpid())] * len(completions)\n"
        "def picky(prompts, completions, answer, **kw):\n"
        "    return [Failed('no grader') if a == 'x' else float(int(a)) for a in answer]\n"
        "async def later(prompts, completions, **kw):\n"
        "    return [0.5] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)  # a relative file path, resolved before it goes to the worker
    specs = [build_spec(fn="r.py:pid", worker=True), build_spec(fn="r.py:picky", worker=True),
             build_spec(fn="r.py:later", worker=True), build_spec(name="format", worker=True)]
    totals, metrics = WeightedRewards(specs)(["q"] * 3, ["a", "<think>b</think>c", "d"],
                                             {"answer": ["1", "x", "2"], "step": 1})
    assert metrics["reward/pid/mean"] not in (0.0, float(os.getpid()))
    assert metrics["reward/picky/errors"] == 1 and metrics["reward/picky/mean"] == 1.5
    assert metrics["reward/later/mean"] == 0.5 and metrics["reward/format/mean"] == pytest.approx(1 / 3)
    with pytest.raises(RewardError, match=r"reward 'picky' failed on sample 1 \(prompt: 'q'\): ValueError"):
        WeightedRewards([build_spec(fn="r.py:picky", worker=True)])(["q"] * 2, ["a", "b"], {"answer": ["1", "y"]})
    with pytest.raises(ValueError, match="`worker: true` is for name:/fn: rewards"):
        build_spec(model=RewardModelSettings(path="."), worker=True)
