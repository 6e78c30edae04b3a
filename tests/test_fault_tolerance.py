"""A run survives what kills runs elsewhere: a non-finite loss or gradient skips the update (weights, optimizer
and checkpoints stay finite) and repeated ones stop the run with a message; one run per output directory (a second
is refused, naming the first; a killed run's lock does not block its resume); a torn metrics line and a corrupt
latest checkpoint do not block a resume; SIGTERM ends a run after its current step with a checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


def _learner(path: Path, **trainer):
    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
    from rl.learner import Learner

    return Learner(str(path), ModelConfig(path=str(path)), TrainerConfig(max_steps=4, lr=1e-2, **trainer),
                   AlgorithmConfig(), temperature=1.0, max_completion_tokens=10)


def _batch():
    from rl.learner import TrainBatch

    completions = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]
    return TrainBatch([[3, 4, 5]] * 4, completions, [[-6.0] * len(c) for c in completions], [1.0, -1.0, 0.5, -0.5],
                      group_size=2)


def test_a_nonfinite_gradient_skips_the_update(tiny_model: Path, tmp_path: Path) -> None:
    from rl.checkpoint import checkpoint_problem

    learner = _learner(tiny_model)
    before = {n: p.detach().clone() for n, p in learner.policy.model.named_parameters()}
    moments = [s["exp_avg"].clone() for s in learner.optimizer.state.values()]
    objective = learner.objective
    learner.objective = lambda *a: (lambda loss, m: (loss * float("nan"), m))(*objective(*a))  # NaN gradients
    metrics = learner.train(_batch())
    assert metrics["skipped_update_frac"] == 1.0 and metrics["nonfinite_streak"] == 1
    for name, param in learner.policy.model.named_parameters():
        assert torch.equal(param.detach(), before[name]), name
    assert all(torch.equal(s["exp_avg"], m) for s, m in zip(learner.optimizer.state.values(), moments))
    assert all(s["step"].item() == 0 for s in learner.optimizer.state.values())
    learner.objective = objective
    metrics = learner.train(_batch())  # a finite step updates again and ends the streak
    assert metrics["skipped_update_frac"] == 0.0 and metrics["nonfinite_streak"] == 0
    learner.save(str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "trainer_state.json").write_text('{"step": 2}')  # what rl.checkpoint adds
    assert checkpoint_problem(tmp_path / "ckpt") is None
    with torch.no_grad():  # weights that went non-finite some other way are never checkpointed
        next(iter(learner.masters.masters)).fill_(float("inf"))
    with pytest.raises(RuntimeError, match="refusing to checkpoint non-finite weights"):
        learner.save(str(tmp_path / "bad"))


def test_checkpoint_problems_and_torn_metrics_lines(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from rl.checkpoint import checkpoint_problem, latest_checkpoint
    from rl.tracking import read_metrics

    root = tmp_path / "run" / "checkpoints"
    for step in (2, 4, 6):
        shutil.copytree(tiny_model, root / f"step_{step}")
        (root / f"step_{step}" / "trainer_state.json").write_text(json.dumps({"step": step}))
    weights = load_file(root / "step_6" / "model.safetensors")
    next(iter(weights.values()))[0] = float("nan")
    save_file(weights, root / "step_6" / "model.safetensors")
    (root / "step_4" / "model.safetensors").write_bytes(b"\x00" * 100)  # torn
    assert "holds NaN or inf" in checkpoint_problem(root / "step_6")
    reports: list[str] = []
    assert latest_checkpoint(tmp_path / "run", report=reports.append) == root / "step_2"
    assert len(reports) == 2 and "step_6" in reports[0] and "step_4" in reports[1]
    assert sorted(p.name for p in root.iterdir()) == ["step_2", "step_4.bad", "step_6.bad"]

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "reward_mean": 0.5}\n{"step": 2, "rew')
    assert read_metrics(metrics) == [{"step": 1, "reward_mean": 0.5}]


def test_the_run_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    from rl.run_lock import RunDirInUse, check_run_dir, lock_run_dir, release

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom rl.run_lock import lock_run_dir\n"
        f"lock_run_dir({str(tmp_path / 'run')!r}); print('locked', flush=True); time.sleep(120)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirInUse, match=rf"in use by another run \(pid {holder.pid} on "):
            check_run_dir(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    check_run_dir(tmp_path / "run")  # the killed holder's lock went with it
    release(lock_run_dir(tmp_path / "run"))
    with pytest.raises(ValueError, match="is not a directory"):
        (tmp_path / "file").write_text("x")
        check_run_dir(tmp_path / "file")


def test_inf_and_nan_settings_are_config_errors(tmp_path: Path) -> None:
    import yaml

    from rl.config import GRPOConfig
    from rl.config_io import ConfigError, load_config

    path = tmp_path / "g.yml"
    path.write_text(yaml.safe_dump({"output_dir": "o", "model": {"path": "m"}, "data": {"train": "x.jsonl"},
                                    "trainer": {"max_steps": 1}, "rewards": [{"name": "format"}]}))
    for value in (".inf", "nan"):
        with pytest.raises(ConfigError, match="trainer.lr"):
            load_config(GRPOConfig, path, [f"trainer.lr={value}"])


def test_unscored_completions_are_left_out_of_advantages_never_zero() -> None:
    from rl.algos import ADVANTAGES, informative_groups, scored_advantages

    nan = float("nan")
    rewards = torch.tensor([1.0, nan, 0.0, 1.0,   # 3 scored: a group of 3
                            nan, nan, nan, 0.7,   # 1 scored: no baseline, all 0
                            0.7, 0.7, nan, 0.7])  # scored ones all equal: 0
    adv = scored_advantages(ADVANTAGES["grpo"], rewards, 4, 1e-6)
    expected = ADVANTAGES["grpo"](torch.tensor([1.0, 0.0, 1.0]), 3, 1e-6)
    assert torch.equal(adv[[0, 2, 3]], expected) and adv[1] == 0
    assert torch.equal(adv[4:], torch.zeros(8))
    assert informative_groups(rewards, 4).tolist() == [True, False, False]
    full = torch.tensor([1.0, 0.0, 0.5, 0.2])
    assert torch.equal(scored_advantages(ADVANTAGES["rloo"], full, 4, 1e-6), ADVANTAGES["rloo"](full, 4, 1e-6))


# ---- through the real CLI ---------------------------------------------------------------------------------------


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _grpo(config: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(config), *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_repeated_nonfinite_steps_stop_the_run_with_a_message(make_config, tmp_path: Path) -> None:
    config = make_config(trainer={"lr": 1e30, "max_steps": 8, "max_nonfinite_steps": 2})
    out = _grpo(config)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "optimizer steps in a row had a non-finite loss or gradient" in out.stderr
    assert "Traceback" not in out.stderr
    records = _metrics(tmp_path / "run")
    assert [r["skipped_update_frac"] for r in records][-2:] == [1.0, 1.0] and len(records) < 8


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_killed_run_resumes_despite_its_lock(make_config, tmp_path: Path) -> None:
    config = make_config(trainer={"max_steps": 40, "save_every": 2})
    run_dir = tmp_path / "run"
    log = (tmp_path / "first.err").open("w")
    first = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        _wait_for(lambda: (run_dir / "checkpoints" / "step_4").is_dir(), "step-4 checkpoint", first)
        second = _grpo(config, timeout=120)
        assert second.returncode == 2
        assert f"is in use by another run (pid {first.pid} on " in second.stderr, second.stderr[-2000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # a torn last metrics line (as a full disk leaves) and a corrupt newest checkpoint
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "reward_me')
    newest = max((p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step_")
                  and p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    (newest / "model.safetensors").write_bytes(b"torn")
    out = _grpo(config, "trainer.max_steps=" + str(int(newest.name[5:]) + 1))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"checkpoint {newest} cannot be resumed from" in out.stdout
    previous = int(newest.name[5:]) - 2
    assert f"resuming from {run_dir / 'checkpoints' / f'step_{previous}'} (step {previous})" in out.stdout
    assert [r["step"] for r in _metrics(run_dir)] == list(range(1, int(newest.name[5:]) + 2))


def test_the_sampler_state_round_trips_through_a_checkpoint() -> None:
    import random

    import numpy as np

    from rl.rollout import sampler_state

    def draws() -> tuple:  # one of each generator an engine samples from
        return torch.rand(4).tolist(), np.random.random(3).tolist(), random.random()

    state = json.loads(json.dumps(sampler_state.capture()))  # as trainer_state.json holds it
    first = draws()
    assert draws() != first
    assert sampler_state.restore(state)
    assert draws() == first


@pytest.mark.slow
def test_a_resumed_run_is_the_uninterrupted_run(make_config, toy_data: Path, tmp_path: Path) -> None:
    # the learner, its optimizer and RNG, the data cursor and the engines' sampler state are all restored, so the
    # steps after a resume sample the same tokens and log the same metrics as the run that was never stopped (the
    # transformers engine's side: test_the_hf_engine_honours_its_seed_and_its_sampler_state)
    # a system prompt longer than a KV-cache block (32 tokens): the uninterrupted run's step 3 finds the prefix
    # cached by the step-2 evaluation, the resumed one computes it afresh, and the numbers must not care
    system = "You are a careful assistant. " * 12
    config = make_config(rollout={"backend": "vllm"}, trainer={"max_steps": 4, "save_every": 2},
                         data={"system_prompt": system}, eval={"data": str(toy_data), "every": 2, "max_prompts": 8})
    run_dir = tmp_path / "run"
    out = _grpo(config)
    assert out.returncode == 0, out.stderr[-3000:]
    uninterrupted = _metrics(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_4")  # as if the run had died during step 3
    out = _grpo(config)
    assert out.returncode == 0 and "(step 2)" in out.stdout, out.stderr[-3000:]
    resumed = _metrics(run_dir)
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted] == [0, 1, 2, 3, 4]

    def without_timings(record: dict) -> dict:
        return {k: v for k, v in record.items() if "time_" not in k and not k.endswith("tokens_per_s")}

    assert "eval_accuracy" in resumed[4] and "reward_mean" in resumed[3]
    for before, after in zip(uninterrupted[3:], resumed[3:], strict=True):
        assert without_timings(after) == without_timings(before)


@pytest.mark.slow
def test_sigterm_ends_the_run_after_its_step_with_a_checkpoint(make_config, tmp_path: Path) -> None:
    config = make_config(trainer={"max_steps": 40, "save_every": 100})
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and len(_metrics(run_dir)) >= 2, "step 2", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    last = _metrics(run_dir)[-1]["step"]
    assert f"stopped by SIGTERM after step {last}; checkpoint saved" in err
    assert (run_dir / "checkpoints" / f"step_{last}" / "trainer_state.json").is_file()
    out = _grpo(config, f"trainer.max_steps={last + 1}")
    assert out.returncode == 0 and f"(step {last})" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_a_grader_outage_leaves_samples_unscored_and_a_total_one_stops_the_run(make_config, tmp_path: Path) -> None:
    toy = ROOT / "tests" / "toy_reward.py"
    config = make_config(trainer={"max_steps": 3, "save_every": 3},
                         rewards=[{"fn": f"{toy}:digit_fraction_grader_down_every_4th", "label": "flaky"}])
    out = _grpo(config)
    assert out.returncode == 0, out.stderr[-3000:]
    for r in _metrics(tmp_path / "run"):
        assert r["reward/unscored_frac"] == 0.25 and r["reward/flaky/errors"] == 8
        assert r["reward_mean"] == pytest.approx(r["reward/flaky/mean"])  # over the scored ones, no zeros mixed in
    config = make_config(output_dir=str(tmp_path / "down"), rewards=[{"fn": f"{toy}:grader_down"}])
    out = _grpo(config)
    assert out.returncode == 1 and "100% of step 1's completions could not be scored" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def _actor_pids(kind: str, driver: int) -> list[int]:
    """Processes of Ray actors of class `kind` started under the run whose driver is `driver` (its Ray cluster's
    raylet is the driver's child, the actors the raylet's): other runs' actors on the machine are not ours."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    parent, args = {}, {}
    for line in out.splitlines()[1:]:
        pid, ppid, *rest = line.split(maxsplit=2)
        parent[int(pid)], args[int(pid)] = int(ppid), rest[0] if rest else ""

    def under_driver(pid: int) -> bool:
        for _ in range(4):
            pid = parent.get(pid, 0)
            if pid == driver:
                return True
        return False

    return [pid for pid, a in args.items() if a.startswith(f"ray::{kind}") and under_driver(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_a_dead_or_hung_rollout_worker_is_replaced_and_the_run_finishes(fault: str, make_config,
                                                                        tmp_path: Path) -> None:
    config = make_config(rollout={"backend": "vllm", "timeout_s": 20, "max_restarts": 2},
                         trainer={"max_steps": 6, "save_every": 6})
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and len(_metrics(run_dir)) >= 2, "step 2", proc)
        (worker,) = _actor_pids("RolloutWorker", proc.pid)
        os.kill(worker, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert [r["step"] for r in _metrics(run_dir)] == list(range(1, 7))
    # a stopped worker is caught in whichever call it was stopped in: sampling or loading the pushed weights
    why = "died" if fault == "kill" else ("(returned nothing|did not load the new weights) within "
                                          r"rollout\.timeout_s=20 s")
    assert re.search(rf"rollout worker 0 {why}.*: restarting it \(restart 1 of 2\)", err), err[-3000:]
    # the new engine got the current weights: the sampler and the learner agree on the last steps
    assert max(r["mismatch_kl"] for r in _metrics(run_dir)[-2:]) < 0.01


@pytest.mark.slow
def test_a_dead_learner_ends_the_run_with_one_message(make_config, tmp_path: Path) -> None:
    config = make_config(trainer={"max_steps": 40, "save_every": 2})
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: (run_dir / "checkpoints" / "step_2").is_dir(), "step-2 checkpoint", proc)
        (learner,) = _actor_pids("Learner", proc.pid)
        os.kill(learner, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err[-3000:]
    assert re.search(r"error: step \d+: learner rank 0 died \(\w+\); the last checkpoint is .*step_\d+: re-run the "
                     r"same command to resume", err), err[-3000:]
    assert "Traceback" not in err


def test_the_hf_engine_honours_its_seed_and_its_sampler_state(tiny_model: Path) -> None:
    from rl.rollout import SamplingSpec, make_engine

    def sample(engine) -> list[list[int]]:
        return [c.token_ids for c in engine.generate([[5, 6, 7]], SamplingSpec(n=4, max_new_tokens=8))[0]]

    def engine(seed: int):
        return make_engine("hf", model_path=str(tiny_model), dtype="float32", seed=seed)

    assert sample(engine(1)) == sample(engine(1)) and sample(engine(1)) != sample(engine(2))
    hf = engine(1)
    state = json.loads(json.dumps(hf.sampler_state()))
    first = sample(hf)
    assert sample(hf) != first and hf.set_sampler_state(state) and sample(hf) == first


@pytest.mark.slow
def test_a_failing_reward_mid_run_is_one_line_not_a_traceback(make_config, tmp_path: Path) -> None:
    config = make_config(rewards=[{"fn": f"{ROOT / 'tests' / 'toy_reward.py'}:broken"}])
    out = _grpo(config)
    assert out.returncode == 1
    assert re.search(r"error: step 1: reward 'broken' failed on sample 0 \(prompt: .*\): ZeroDivisionError", out.stderr)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


def test_a_reward_failing_at_evaluation_is_one_line_not_a_traceback(make_config, tmp_path: Path) -> None:
    held_out = tmp_path / "held_out.jsonl"  # `answer` is text here: the reward's `answer % 4` raises
    held_out.write_text(json.dumps({"prompt": "Count to 3", "answer": "three"}) + "\n")
    toy = ROOT / "tests" / "toy_reward.py"
    config = make_config(rewards=[{"fn": f"{toy}:digit_fraction_unless_answer_is_3_mod_4"}],
                         eval={"data": str(held_out)})
    out = _grpo(config)
    assert out.returncode == 1, out.stderr[-2000:]
    assert re.search(r"error: step 0: reward '\w+' failed on sample 0 .*TypeError.*: re-run the same command",
                     out.stderr), out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_an_entropy_collapse_is_flagged(make_config, tmp_path: Path) -> None:
    config = make_config(trainer={"lr": 10.0, "max_steps": 3, "save_every": 3})
    out = _grpo(config)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "entropy collapsed to" in out.stdout and out.stdout.count("ALERT") == 1
    records = _metrics(tmp_path / "run")
    assert "alert/entropy_collapse" not in records[0] and records[-1]["alert/entropy_collapse"] == 1.0
    # said once per run: a resume that is still collapsed flags its steps but does not print it again
    resumed = _grpo(config, "trainer.max_steps=4")
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-2000:]
    assert "ALERT" not in resumed.stdout and _metrics(tmp_path / "run")[-1]["alert/entropy_collapse"] == 1.0


@pytest.mark.slow
def test_a_replaced_rollout_worker_draws_what_the_lost_one_would_have(tiny_model: Path) -> None:
    import ray

    from rl.actors import RolloutGroup, init_ray
    from rl.rollout import SamplingSpec

    prompts, spec = [[5, 6, 7], [8, 9]], SamplingSpec(n=4, max_new_tokens=8)
    engine = {"model_path": str(tiny_model), "dtype": "float32"}

    def tokens(groups: list) -> list:
        return [[c.token_ids for c in group] for group in groups]

    init_ray(None)
    try:
        steady = RolloutGroup(1, "hf", engine)
        expected = [tokens(steady.generate(prompts, spec)) for _ in range(3)]
        group = RolloutGroup(1, "hf", engine, max_restarts=1)
        got = [tokens(group.generate(prompts, spec))]
        ray.kill(group.workers[0], no_restart=True)  # lost between two generates: found dead by the next one
        got += [tokens(group.generate(prompts, spec)), tokens(group.generate(prompts, spec))]
    finally:
        ray.shutdown()
    assert group.restarts == 1 and len({str(t) for t in expected}) == 3
    assert got == expected  # a fresh engine would have drawn the first generate's tokens again


@pytest.mark.slow
def test_an_engine_hung_while_idle_is_replaced_at_the_weight_push(tiny_model: Path) -> None:
    """Found by benchmarks/chaos.py: a worker stopped between steps blocked the object-store push forever."""
    from types import SimpleNamespace

    import ray

    from rl.actors import RolloutGroup, init_ray, start_learner
    from rl.config import AlgorithmConfig, ModelConfig, RolloutConfig, TrainerConfig
    from rl.session import Session
    from rl.weight_sync import SYNCS

    init_ray(None)
    try:
        learner = start_learner(str(tiny_model), ModelConfig(path=str(tiny_model)), TrainerConfig(max_steps=1),
                                AlgorithmConfig(), 1.0, num_workers=1)
        sync = SYNCS["object_store"]()
        group = RolloutGroup(1, "hf", {"model_path": str(tiny_model), "dtype": "float32"}, timeout_s=5,
                             max_restarts=1, on_restart=sync.restore)
        sync.connect(learner, group.workers)
        pid = ray.get(group.workers[0].__ray_call__.remote(lambda _: os.getpid()))
        os.kill(pid, signal.SIGSTOP)
        session = SimpleNamespace(cfg=SimpleNamespace(rollout=RolloutConfig(timeout_s=5)), weight_sync=sync,
                                  rollout=group)
        start = time.perf_counter()
        Session.push_weights(session)
        assert group.restarts == 1 and time.perf_counter() - start < 120
        prompt, completion = [5, 6, 7], [8, 9, 10]
        expected = learner.call("score", prompt, completion)
        got = ray.get(group.workers[0].score.remote(prompt, completion))
        assert max(abs(a - b) for a, b in zip(got, expected)) < 0.05  # the new engine serves the learner's weights
    finally:
        ray.shutdown()
