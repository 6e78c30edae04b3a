"""GRPO step time, synchronous vs one-step off-policy rollout (`rollout.max_staleness` 0 vs 1), side by side.

    python benchmarks/async_vs_sync.py [--steps 5] [--config examples/arithmetic/config.yaml] [key=value ...]

Runs the real CLI twice on the same config (default: the arithmetic example with SmolLM2-135M-Instruct), first
synchronous then with the next batch sampled while the learner trains, each in a fresh output directory, and
reports the median `time_step_s` of steps 2..N (step 1 has nothing to overlap) and the ratio. Extra `key=value`
arguments are config overrides applied to both runs. On a machine whose learner and rollout engine share the same
cores the overlap can only pay where one of them leaves cores idle; this measures whether it does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(config: str, staleness: int, steps: int, out: Path, overrides: list[str]) -> list[dict]:
    args = [sys.executable, "-m", "rl.grpo", "--config", config, f"output_dir={out}", f"trainer.max_steps={steps}",
            f"trainer.save_every={steps}", f"rollout.max_staleness={staleness}", "tensorboard=false", *overrides]
    if "eval:" in Path(ROOT / config).read_text():
        args += ["eval.every=0", "eval.max_prompts=8"]  # held-out eval is not part of a step; keep it short
    env = {**os.environ, "RAY_memory_usage_threshold": os.environ.get("RAY_memory_usage_threshold", "0.98")}
    log = out.parent / f"staleness{staleness}.log"
    with log.open("w") as f:
        code = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"max_staleness={staleness}: exit {code}; log tail:\n{log.read_text()[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if line.strip() and "time_step_s" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--config", default="examples/arithmetic/config.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for both runs")
    args = parser.parse_args()
    medians = {}
    with tempfile.TemporaryDirectory(prefix="async_vs_sync-") as tmp:
        for staleness in (0, 1):
            records = run(args.config, staleness, args.steps, Path(tmp) / f"s{staleness}", args.overrides)
            timed = [r["time_step_s"] for r in records[1:]]
            medians[staleness] = statistics.median(timed)
            parts = {k: statistics.median(r[f"time_{k}_s"] for r in records[1:]) for k in ("rollout", "train", "sync")}
            print(f"max_staleness={staleness}: step times {[round(r['time_step_s'], 1) for r in records]}; "
                  f"median of steps 2..{args.steps}: {medians[staleness]:.1f} s (rollout {parts['rollout']:.1f}, "
                  f"train {parts['train']:.1f}, sync {parts['sync']:.1f}); reward per step "
                  f"{[round(r['reward_mean'], 3) for r in records]}", flush=True)
    print(f"sync_over_async_step_time={medians[0] / medians[1]:.2f}")


if __name__ == "__main__":
    main()
