"""GRPO step time, ours vs TRL's `GRPOTrainer`, on one workload, one after the other in a single run.

    python benchmarks/vs_trl.py [--steps 6] [--ours-backend vllm|hf] [--prompts-per-step 8] [--n 8]
                                [--max-new-tokens 32] [--micro-batch 64] [--model smollm2-135m-instruct]
                                [--allocator same|shipped]

Workload (identical on both sides): the first `steps × prompts-per-step` rows of
datasets/arithmetic/train.jsonl (chat `prompt` + `answer`), taken in file order (no shuffling), so step k of
each side sees the same prompts; `n` completions per prompt sampled at temperature 1.0 (top-p 1, no top-k) for
at most `max-new-tokens` tokens; reward `rewards.boxed.boxed_int_match`; bf16 compute with float32 master
weights and AdamW state, each side in its own default way (ours: bf16 parameters, float32 masters in the
optimizer, `trainer.precision: bf16_params`; TRL: float32 parameters under bf16 autocast, `bf16=True`); AdamW at
the same constant learning rate, grad-norm clip 1.0; one optimizer step per rollout batch on the whole batch
(micro-batches of `--micro-batch` sequences, loss = token sum / completion tokens of the batch); PPO-clip with
eps 0.2 both ways; no KL term (beta = 0, no reference model); no gradient checkpointing.

- Ours: the real CLI (`python -m rl.grpo` with a generated config, output under a temp dir), so Ray, the
  rollout engine (vLLM with `enforce_eager`, or `--ours-backend hf` for transformers `generate`) and the
  learner start for real. Step times are `time_step_s` of metrics.jsonl (rollout + reward + train + weight
  sync). Start-up = launch → first step begins (first metrics line minus that step's time). Ray would start
  our learner and engine at nice 15 (its default), which on a shared machine starves them behind anyone
  else's work; the benchmark runs them at nice 0 like the TRL side (`--ray-niceness` changes it).
- TRL: `GRPOTrainer` in this process, transformers `generate` (TRL's vLLM mode needs CUDA), no logging, no
  checkpoints. A `TrainerCallback` times each optimizer step (on_step_begin → on_step_end: generation,
  reward, forward/backward of every micro-batch and the optimizer step). Start-up = `import trl` → first
  step begins.

Allocator: our CLI starts its actors with glibc settings that keep freed memory in the heap
(`rl.actors.ACTOR_ENV_DEFAULTS`), which makes any PyTorch training loop on this CPU faster, TRL's included. By
default (`--allocator same`) the benchmark re-executes itself with them, so TRL gets them too; `--allocator shipped`
runs each side as it ships (TRL with glibc's defaults).

The two run sequentially, never concurrently (2-core machine). The first `--warmup` step(s) of each side are
left out of the statistics. The last line printed is `ratio_trl_over_ours=X.XX` (median TRL step time / median
ours). Results and the remaining configuration differences: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DATA = ROOT / "datasets" / "arithmetic" / "train.jsonl"


@dataclass
class Side:
    """What one side measured: per-step seconds (warm-up included), start-up and per-step workload stats."""

    name: str
    step_s: list[float]
    startup_s: float
    wall_s: float
    reward_mean: list[float] = field(default_factory=list)
    completion_len: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)  # ours: rollout / reward / train / sync


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per side (default 6)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the statistics (default 1)")
    p.add_argument("--ours-backend", choices=["vllm", "hf"], default="vllm", help="our rollout.backend")
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--n", type=int, default=8, help="completions per prompt (GRPO group size)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=64,
                   help="sequences per forward/backward on both sides (must divide prompts-per-step × n; default 64: "
                        "the whole step's batch in one pass, which fits easily at these sizes)")
    p.add_argument("--lr", type=float, default=1e-6, help="AdamW learning rate, constant (default 1e-6)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model alias or local HF directory")
    p.add_argument("--ray-niceness", type=int, default=0,
                   help="nice value of our Ray workers (Ray's own default is 15; 0 = same as TRL here)")
    p.add_argument("--only", choices=["ours", "trl"], help="run one side only (debugging; no ratio)")
    p.add_argument("--allocator", choices=["same", "shipped"], default="same",
                   help="same (default): TRL runs with the glibc settings our CLI gives its actors "
                        "(rl.actors.ACTOR_ENV_DEFAULTS); shipped: each side as it ships (TRL with glibc's defaults)")
    args = p.parse_args(argv)
    batch = args.prompts_per_step * args.n
    if args.steps <= args.warmup:
        p.error(f"--steps={args.steps} must exceed --warmup={args.warmup} (the warm-up steps are not timed)")
    if batch % args.micro_batch:
        p.error(f"--micro-batch={args.micro_batch} must divide prompts-per-step × n = {batch}")
    return args


def load_workload(num_rows: int) -> list[dict]:
    """The first `num_rows` rows of the arithmetic training set, reduced to the columns both sides use."""
    rows = []
    with TRAIN_DATA.open() as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows.append({"prompt": row["prompt"], "answer": row["answer"]})
            if len(rows) == num_rows:
                return rows
    raise SystemExit(f"{TRAIN_DATA} has only {len(rows)} rows, {num_rows} needed")


# --- ours ---------------------------------------------------------------------------------------------------


def ours_config(args: argparse.Namespace, model_path: str, data: Path, out_dir: Path) -> dict:
    return {
        "output_dir": str(out_dir),
        "model": {"path": model_path, "dtype": "bfloat16"},
        "data": {"train": str(data), "prompts_per_step": args.prompts_per_step, "shuffle": False},
        "rollout": {"backend": args.ours_backend, "n": args.n, "max_new_tokens": args.max_new_tokens,
                    "temperature": 1.0, "top_p": 1.0},
        "trainer": {"max_steps": args.steps, "lr": args.lr, "micro_batch_size": args.micro_batch,
                    "updates_per_batch": 1, "max_grad_norm": 1.0, "save_every": args.steps},
        "algorithm": {"loss": {"eps_low": 0.2, "eps_high": 0.2}, "kl_beta": 0.0},
        "rewards": [{"name": "boxed_int", "weight": 1.0}],
        "tensorboard": False,
    }


def ours_env(args: argparse.Namespace) -> dict[str, str]:
    """Ray starts its workers (our learner and rollout engine) at nice 15 unless told otherwise; TRL runs at
    this process's priority. On a shared machine that alone can starve ours, so by default both run at the
    same priority (`--ray-niceness 15` restores Ray's default)."""
    return {**os.environ, "RAY_worker_niceness": str(args.ray_niceness)}


def run_ours(args: argparse.Namespace, rows: list[dict], tmp: Path) -> Side:
    """`python -m rl.grpo` on a generated config; start-up is read off the first metrics line's arrival."""
    import yaml

    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_dir = tmp / "ours"
    config = tmp / "ours.yaml"
    config.write_text(yaml.safe_dump(ours_config(args, args.model, data, out_dir), sort_keys=False))
    metrics, log_path = out_dir / "metrics.jsonl", tmp / "ours.log"
    with log_path.open("w") as log:
        t_launch = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "rl.grpo", "--config", str(config)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env=ours_env(args))
        t_first = None
        while proc.poll() is None:
            if t_first is None and metrics.is_file() and metrics.stat().st_size > 0:
                t_first = time.perf_counter()
            time.sleep(0.05)
        wall = time.perf_counter() - t_launch
    if proc.returncode != 0:
        tail = log_path.read_text()[-4000:]
        raise SystemExit(f"ours: `python -m rl.grpo` exited with {proc.returncode}; log tail:\n{tail}")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if t_first is None:  # the whole run finished between two polls: fall back to the process end
        t_first = t_launch + wall
    return Side(
        name=f"ours ({args.ours_backend})",
        step_s=[r["time_step_s"] for r in records],
        startup_s=t_first - t_launch - records[0]["time_step_s"],
        wall_s=wall,
        reward_mean=[r["reward_mean"] for r in records],
        completion_len=[r["response_len_mean"] for r in records],
        parts={k: [r[f"time_{k}_s"] for r in records] for k in ("rollout", "reward", "train", "sync")},
    )


# --- TRL ----------------------------------------------------------------------------------------------------


def trl_config(args: argparse.Namespace, out_dir: Path):
    """GRPOConfig (TRL 1.16 field names) matching ours as closely as TRL allows."""
    from trl import GRPOConfig

    batch = args.prompts_per_step * args.n
    return GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=True, seed=0,
        # one optimizer step = prompts-per-step × n completions, generated at once, in micro-batches
        per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=batch // args.micro_batch,
        num_generations=args.n, max_completion_length=args.max_new_tokens, max_steps=args.steps,
        temperature=1.0, top_p=1.0, top_k=0, shuffle_dataset=False,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        # the loss: PPO-clip 0.2 both ways, token sum / completion tokens of the whole batch, no KL, μ = 1
        loss_type="dapo", epsilon=0.2, epsilon_high=0.2, beta=0.0, num_iterations=1, scale_rewards="group",
        gradient_checkpointing=False,  # TRL turns it on by default; ours is off
        report_to=[], logging_strategy="no", save_strategy="no", disable_tqdm=True, log_completions=False,
        dataloader_num_workers=0,
    )


def run_trl(args: argparse.Namespace, rows: list[dict], tmp: Path) -> Side:
    """GRPOTrainer in this process; a callback stamps each optimizer step."""
    t0 = time.perf_counter()
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from datasets import Dataset
    from rewards.boxed import boxed_int_match
    from rl.models import resolve_model_path

    torch.set_num_threads(os.cpu_count())  # as our learner does

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []

        def on_step_begin(self, *_, **__) -> None:
            self.begin.append(time.perf_counter())

        def on_step_end(self, *_, **__) -> None:
            self.end.append(time.perf_counter())
            print(f"[trl] step {len(self.end)}: {self.end[-1] - self.begin[-1]:.1f} s", file=sys.stderr, flush=True)

    timer, rewards, lengths = StepTimer(), [], []

    @functools.wraps(boxed_int_match)  # same name in TRL's metrics; records what each step sampled
    def reward(prompts: list, completions: list, completion_ids: list, **columns) -> list[float]:
        scores = boxed_int_match(prompts, completions, **columns)
        rewards.append(statistics.mean(scores))
        lengths.append(statistics.mean(len(c) for c in completion_ids))
        return scores

    trainer = GRPOTrainer(model=resolve_model_path(args.model), reward_funcs=reward,
                          args=trl_config(args, tmp / "trl"), train_dataset=Dataset.from_list(rows),
                          callbacks=[timer])
    trainer.train()
    wall = time.perf_counter() - t0
    if len(timer.end) != args.steps:
        raise SystemExit(f"TRL ran {len(timer.end)} optimizer steps, expected {args.steps}")
    return Side(
        name="TRL GRPOTrainer",
        step_s=[e - b for b, e in zip(timer.begin, timer.end)],
        startup_s=timer.begin[0] - t0,
        wall_s=wall,
        reward_mean=rewards,
        completion_len=lengths,
    )


# --- report -------------------------------------------------------------------------------------------------


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f} {statistics.mean(values):8.2f} {min(values):8.2f}"


def report(sides: list[Side], warmup: int) -> None:
    print(f"\nstep time in seconds, steps {warmup + 1}..{len(sides[0].step_s)} "
          f"(first {warmup} left out as warm-up)")
    print(f"{'':34} {'median':>8} {'mean':>8} {'min':>8}   start-up   warm-up step   wall")
    for side in sides:
        timed = side.step_s[warmup:]
        print(f"{side.name:34} {_stats(timed)}   {side.startup_s:7.1f} s   "
              f"{sum(side.step_s[:warmup]):9.1f} s   {side.wall_s:6.1f} s")
        for part, values in side.parts.items():
            print(f"  {part:32} {_stats(values[warmup:])}")
    for side in sides:
        rewards = " ".join(f"{r:.3f}" for r in side.reward_mean)
        lengths = " ".join(f"{c:.1f}" for c in side.completion_len)
        print(f"{side.name}: reward_mean per step [{rewards}]; mean completion tokens per step [{lengths}]")
        print(f"{side.name}: step times [{' '.join(f'{s:.2f}' for s in side.step_s)}]")
        for part, values in side.parts.items():
            print(f"{side.name}: {part} per step [{' '.join(f'{v:.2f}' for v in values)}]")


def _malloc_keys() -> list[str]:
    from rl.actors import ACTOR_ENV_DEFAULTS

    return [key for key in ACTOR_ENV_DEFAULTS if key.startswith("MALLOC_")]


def same_allocator_for_both() -> None:
    """Our CLI gives its actors glibc settings that keep freed memory in the heap (`rl.actors`), which speeds any
    PyTorch training loop on this CPU, TRL's included. glibc reads them at process start, so unless this process
    already has them, re-execute it with them: TRL (in this process) and ours (its actors inherit them) then run
    with the same allocator."""
    from rl.actors import ACTOR_ENV_DEFAULTS

    if all(key in os.environ for key in _malloc_keys()):
        return
    env = {**os.environ, **{key: ACTOR_ENV_DEFAULTS[key] for key in _malloc_keys()}}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.allocator == "same":
        same_allocator_for_both()
    print("allocator: " + " ".join(f"{k}={os.environ.get(k, '')!r}" for k in _malloc_keys()), flush=True)
    rows = load_workload(args.steps * args.prompts_per_step)
    sides = []
    with tempfile.TemporaryDirectory(prefix="vs_trl-") as tmp:
        for name, run in (("ours", run_ours), ("trl", run_trl)):
            if args.only in (None, name):
                print(f"[{name}] load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
                sides.append(run(args, rows, Path(tmp)))
                print(f"[{name}] load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    report(sides, args.warmup)
    if len(sides) == 2:
        ours, trl = sides
        ratio = statistics.median(trl.step_s[args.warmup:]) / statistics.median(ours.step_s[args.warmup:])
        print(f"ratio_trl_over_ours={ratio:.2f}")


if __name__ == "__main__":
    main()
