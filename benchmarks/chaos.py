"""Chaos benchmark: kill -9 and SIGSTOP pieces of a real GRPO run, over and over, and check that it recovers.

    python benchmarks/chaos.py --cycles 10 [--seed 0] [--steps-per-cycle 3] [--keep]

One GRPO run (`python -m rl.grpo --config ...` as a subprocess in its own session: real Ray, real vLLM rollout
engine on CPU) on the tiny random Qwen3 (`rl.models.build_tiny_qwen3`), 64 toy prompts, the toy reward
`tests/toy_reward.py:digit_fraction`, a checkpoint every 2 steps. Each cycle waits until the run logs a new step,
then a seeded random 0..steps-per-cycle step times, then injects one fault, round-robin over:

  driver      SIGKILL the driver's whole process group (it holds Ray's GCS and raylet);
  learner     SIGKILL the `ray::Learner` process (the driver should end with one message, exit 1);
  rollout     SIGKILL a `ray::RolloutWorker`: the run must replace it by itself (we do not restart it);
  checkpoint  SIGKILL the driver group the moment `checkpoints/step_N.tmp` appears (inside a checkpoint write);
  stop        (once, mid-benchmark) SIGSTOP a rollout worker: the run must replace it after rollout.timeout_s.

After a kill the same command is started again; it must print `resuming from .../step_K (step K)` and log a step.
Processes of a killed run still alive 30 s later are found by their session id (= the driver's pid) and SIGKILLed
one by one (column `leftovers`); `ray stop --force` is never used (it would hit other Ray clusters on the machine).
At the end the run goes on to trainer.max_steps (M) and is checked.

Reading the table: `steps lost` = last step logged before the fault - K (work redone); `beyond ckpt` = newest
complete checkpoint at the fault - K, must be 0 (a resume never starts before the last complete checkpoint);
`cursor` ok = checkpoint K's data cursor has consumed exactly K * prompts_per_step prompts. For rollout/stop, `late`
= the next step came more than rollout.timeout_s + 180 s after the fault. Final line: `ok=R/C` (cycles that
recovered, late ones included and counted), the sum of `beyond ckpt`, and `data_order_kept` = metrics.jsonl holds
steps 1..M each once and the final checkpoint's cursor has consumed M * prompts_per_step prompts (the data order
is a pure function of that cursor and the seed). Then (unless --no-reference) the same command runs once more,
undisturbed, into another directory, and `same_as_uninterrupted` counts the steps whose every logged metric
(timings aside) equals the undisturbed run's: checkpoints hold the engines' sampler state and a replaced rollout
worker takes over the lost one's, so a run that was killed and resumed is meant to be the run that never was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS_PER_STEP, ROWS, TIMEOUT_S = 4, 64, 20
ROUND = ("driver", "learner", "rollout", "checkpoint")


def session_procs(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process in session `sid` (the driver and all it started, Ray workers too)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) + [""] for line in out.splitlines() if line.strip()]
    return [(int(r[0]), r[2]) for r in rows if int(r[1]) == sid]


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Run:
    """One start of the GRPO command, in a new session; stdout/stderr to `logs/start_<n>.{out,err}`."""

    def __init__(self, config: Path, logs: Path, n: int):
        self.out_path, self.err_path = logs / f"start_{n}.out", logs / f"start_{n}.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                                         stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                         start_new_session=True)
        self.sid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def step(self) -> int:
        """The last step this start printed (0: none yet)."""
        return max(map(int, re.findall(r"^step (\d+): reward", self.out_path.read_text(), re.M)), default=0)

    def resumed(self) -> int | None:
        m = re.search(r"resuming from \S+ \(step (\d+)\)", self.out_path.read_text())
        return int(m.group(1)) if m else None

    def restarts(self) -> list[str]:
        return re.findall(r"(rollout worker \d+ [^:\n]*): restarting it", self.err_path.read_text())

    def err_tail(self, n: int = 3) -> str:
        lines = [ln for ln in self.err_path.read_text().splitlines() if ln.strip() and "pid=" not in ln]
        return " / ".join(lines[-n:])

    def pids(self, name: str) -> list[int]:
        return [pid for pid, args in session_procs(self.sid) if args.startswith(f"ray::{name}")]

    def kill(self) -> int:
        """SIGKILL the driver's group, then whatever of its session is still alive 30 s later: that count."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.sid, signal.SIGKILL)
        self.proc.wait()
        wait_until(lambda: not session_procs(self.sid), 30, every=0.5)
        left = session_procs(self.sid)
        for pid, _ in left:
            sigkill(pid)
        return len(left)


def wait_until(cond, timeout: float, run: Run | None = None, every: float = 0.2) -> bool:
    """Poll `cond` until true (True), `timeout` s pass or `run` ends (then: `cond()` once more)."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline or (run is not None and not run.alive()):
            return bool(cond())
        time.sleep(every)
    return True


def records(run_dir: Path) -> list[dict]:
    from rl.tracking import read_metrics  # skips a line torn by a kill

    return read_metrics(run_dir / "metrics.jsonl")


def last_logged(run_dir: Path) -> int:
    return max((r["step"] for r in records(run_dir)), default=0)


def complete_checkpoint(run_dir: Path) -> int:
    return max((int(d.name[5:]) for d in (run_dir / "checkpoints").glob("step_*")
                if d.name[5:].isdigit() and (d / "trainer_state.json").is_file()), default=0)


def consumed(run_dir: Path, step: int) -> int | None:
    """Prompts the data cursor of checkpoint `step` has taken (epoch * rows + position); 0 for step 0."""
    path = run_dir / "checkpoints" / f"step_{step}" / "trainer_state.json"
    if step == 0 or not path.is_file():
        return 0 if step == 0 else None
    data = json.loads(path.read_text())["data"]
    return data["epoch"] * data["num_rows"] + data["position"]


def same_as_uninterrupted(config: Path, run_dir: Path, reference: Path) -> str:
    """Run `config` undisturbed into `reference`; how many steps of `run_dir` log what it logs (timings aside)."""
    out = subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(config), f"output_dir={reference}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return f"reference run failed (exit {out.returncode}): {out.stderr[-500:]}"

    def metrics(record: dict) -> dict:
        return {k: v for k, v in record.items() if "time_" not in k and not k.endswith("tokens_per_s")}

    ours = {r["step"]: metrics(r) for r in records(run_dir)}
    theirs = {r["step"]: metrics(r) for r in records(reference)}
    differ = [step for step in sorted(theirs) if ours.get(step) != theirs[step]]
    if not differ:
        return f"{len(theirs)}/{len(theirs)} steps"
    a, b = ours.get(differ[0], {}), theirs[differ[0]]
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))[:6]
    return f"{len(theirs) - len(differ)}/{len(theirs)} steps; first differing step {differ[0]}: {keys}"


def setup(tmp: Path, max_steps: int) -> Path:
    import yaml

    from rl.models import build_tiny_qwen3

    with (tmp / "train.jsonl").open("w") as f:
        for i in range(ROWS):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"Count to {i}"}], "answer": i}) + "\n")
    cfg = {"output_dir": str(tmp / "run"), "model": {"path": str(build_tiny_qwen3(tmp / "model", seed=0))},
           "data": {"train": str(tmp / "train.jsonl"), "prompts_per_step": PROMPTS_PER_STEP},
           "rollout": {"backend": "vllm", "n": 8, "max_new_tokens": 16, "kv_cache_gib": 0.25,
                       "timeout_s": TIMEOUT_S, "max_restarts": 50},
           "trainer": {"max_steps": max_steps, "lr": 2e-2, "micro_batch_size": 16, "save_every": 2},
           "rewards": [{"fn": f"{ROOT / 'tests' / 'toy_reward.py'}:digit_fraction"}]}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "config.yaml"


def inject(run: Run, target: str, row: dict, run_dir: Path, rng: random.Random) -> bool:
    """The fault; True when the same run got over it by itself (rollout / stop), False when it must be restarted."""
    if target == "checkpoint":  # the next checkpoint write, caught inside it: kill at once, look after
        ckdir, tmps = run_dir / "checkpoints", []
        wait_until(lambda: tmps.extend(n for n in (os.listdir(ckdir) if ckdir.is_dir() else [])
                                       if n.endswith(".tmp")) or tmps, 900, run, every=0.002)
        row["leftovers"] = run.kill()
        still = ", ".join(sorted(p.name for p in ckdir.glob("step_*.tmp"))) or "none"
        row["notes"] = f"killed inside the write of {tmps[0]} (.tmp left: {still})" if tmps else "no .tmp seen"
    elif target == "driver":
        row["leftovers"] = run.kill()
    elif target == "learner":
        pids = run.pids("Learner")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            wait_until(lambda: not run.alive(), 300)
        code = run.proc.poll()
        row["notes"] = ("no ray::Learner process found" if not pids else "driver still running after 300 s"
                        if code is None else f"driver exit {code}: {run.err_tail(1)}")
        row["leftovers"] = run.kill()
    else:  # rollout / stop: the same run must get over it
        at, workers, restarts = run.step(), run.pids("RolloutWorker"), len(run.restarts())
        if not workers:
            row.update(notes="no ray::RolloutWorker process found", leftovers=run.kill())
            return False
        pid, t0 = rng.choice(workers), time.time()
        os.kill(pid, signal.SIGKILL if target == "rollout" else signal.SIGSTOP)
        ok = wait_until(lambda: run.step() >= at + 1, 900, run)
        stall = time.time() - t0
        ok = ok and wait_until(lambda: run.step() >= at + 2, 600, run)
        why = run.restarts()[restarts:]
        row["notes"] = (f"next step {stall:.0f} s after the fault; " if ok else "") + (
            f"worker replaced: {'; '.join(why)}" if why else "no worker restart logged")
        if ok:  # a replacement takes timeout_s + an engine start (< 180 s here); longer is a late recovery
            late = stall > TIMEOUT_S + 180
            row.update(recovered=f"late ({stall:.0f} s)" if late else "yes", resumed="same run", lost=0, beyond=0)
            return True
        row["notes"] += f"; no step past {at + 1} (exit {run.proc.poll()}): {run.err_tail()}"
        row.update(recovered="no", leftovers=run.kill())
        sigkill(pid)  # a stopped worker that outlived its run
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps-per-cycle", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, run)")
    parser.add_argument("--no-reference", action="store_true", help="skip the undisturbed run compared against")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    targets = [ROUND[i % len(ROUND)] for i in range(args.cycles - 1)]
    targets.insert(args.cycles // 2, "stop")
    max_steps = args.cycles * (args.steps_per_cycle + 5) + 5  # each cycle advances <= steps-per-cycle + 4 steps
    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    config, run_dir, logs = setup(tmp, max_steps), tmp / "run", tmp / "logs"
    logs.mkdir()
    runs: list[Run] = [Run(config, logs, 1)]

    def resume(row: dict) -> Run:
        """Start the command again: it must resume from the newest complete checkpoint and log a step."""
        last, ckpt = last_logged(run_dir), complete_checkpoint(run_dir)
        cursor = consumed(run_dir, ckpt)  # read now: keep_last may remove it later
        row["fault_at"] = row.get("fault_at", "-") + f" (last logged {last}, newest complete checkpoint {ckpt})"
        runs.append(run := Run(config, logs, len(runs) + 1))
        ok = wait_until(run.step, 900, run)
        k = run.resumed() or 0
        cursor = cursor if k == ckpt else consumed(run_dir, k)
        row.update(resumed=f"step {k}" if ok else "-", lost=last - k, beyond=ckpt - k,
                   cursor="ok" if cursor == k * PROMPTS_PER_STEP else f"BAD ({cursor})")
        row["recovered"] = row.get("recovered", "yes") if ok else "no"
        if not ok:
            row["notes"] += f"; restart made no progress (exit {run.proc.poll()}): {run.err_tail()}"
        return run

    run, rows = runs[0], []
    for cycle, target in enumerate(targets, 1):
        rows.append(row := {"cycle": cycle, "target": target, "notes": "", "leftovers": 0, "cursor": "-"})
        seen = run.step()
        if wait_until(lambda r=run, s=seen: r.step() > s, 900, run):
            times = [r["time_step_s"] for r in records(run_dir)[-5:] if "time_step_s" in r] or [2.0]
            delay = rng.uniform(0, args.steps_per_cycle) * statistics.median(times)
            wait_until(lambda: False, delay, run)
            row["fault_at"] = f"after step {last_logged(run_dir)} +{delay:.1f} s"
        if not run.alive() or "fault_at" not in row:
            row.update(recovered="no", notes=f"no fault: no progress or the run ended (exit {run.proc.poll()}): "
                       f"{run.err_tail()}", leftovers=run.kill())
        elif inject(run, target, row, run_dir, rng):
            continue
        run = resume(row)

    if not run.alive() and run.proc.returncode != 0:
        run.kill()
        runs.append(run := Run(config, logs, len(runs) + 1))
    finished = wait_until(lambda: not run.alive(), 3600)
    final_code = run.proc.poll()
    run.kill()
    steps = [r["step"] for r in records(run_dir)]
    once = steps == list(range(1, max_steps + 1))
    order_kept = finished and final_code == 0 and once and consumed(run_dir, max_steps) == max_steps * PROMPTS_PER_STEP
    stray = [p for r in runs for p in session_procs(r.sid)]

    print(f"\nmachine: {os.cpu_count()} cores; run: M={max_steps} steps, {len(runs)} starts; dir {tmp}\n")
    keys = ("cycle", "target", "fault_at", "recovered", "resumed", "lost", "beyond", "cursor", "leftovers", "notes")
    print("| cycle | target | fault | recovered | resumed from | steps lost | beyond ckpt | cursor | leftovers | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "-")).replace("|", "/") for k in keys) + " |")
    print(f"\nfinal run: exit {final_code}; metrics.jsonl steps 1..{max_steps} each once: {once} ({len(steps)} lines); "
          f"final cursor consumed {consumed(run_dir, max_steps)} prompts (expected {max_steps * PROMPTS_PER_STEP}); "
          f"processes left in the runs' sessions: {len(stray)}")
    if final_code != 0:
        print(f"final run stderr: {run.err_tail(5)}")
    recovered = sum(r.get("recovered", "no") != "no" for r in rows)
    late = sum(r.get("recovered", "").startswith("late") for r in rows)
    beyond = sum(r["beyond"] for r in rows if isinstance(r.get("beyond"), int))
    same = "skipped" if args.no_reference else same_as_uninterrupted(config, run_dir, tmp / "reference")
    print(f"ok={recovered}/{len(rows)} (late: {late}) steps_lost_beyond_last_checkpoint={beyond} "
          f"data_order_kept={'yes' if order_kept else 'no'} same_as_uninterrupted={same}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
