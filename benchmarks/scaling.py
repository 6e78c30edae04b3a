"""Learner scaling over N FSDP2 ranks: step time, tokens/s and per-rank memory of `Learner.train` for N = 1, 2, ...

    python benchmarks/scaling.py [--learners 1 2] [--steps 4] [--rounds 2] [--model smollm2-135m-instruct]
    python benchmarks/scaling.py --gpu-model qwen3-0.6b --learners 1 [--steps 4]    # a GPU box, no Ray / vLLM
    python benchmarks/scaling.py --gpu-model qwen3-0.6b --layers 1 --learners 1 2 --steps 1 --rounds 1 \
        --prompts 2 --group 2 --prompt-len 16 --min-completion 8 --max-completion 16    # CPU smoke (~1 min)

The driver (no torchrun) runs, for each N in `--learners`,
`python -m torch.distributed.run --standalone --nproc_per_node=N benchmarks/scaling.py --worker ...` as a
subprocess, one after the other, interleaved over `--rounds` (N=1, N=2, N=1, N=2, ...) so that every N sees the same
phases of the machine. Each rank builds `rl.learner.Learner` as the training CLI does; under torchrun it joins the
process group from the environment (`rl.distributed.join`) and trains on its share of whole prompt groups; N=1 is
the plain, unsharded learner. Each worker times `learner.train(batch)` for `--steps` steps after one warm-up step
(a barrier before and after each step, so a step is the slowest rank's), and rank 0 prints one JSON line with the
step times, the trained tokens per step, and from every rank (`all_gather_object`) its peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`) and the elements it holds of parameters (+ float32 masters) and AdamW state
(`rl.distributed.local_numel`). The driver prints a markdown table: N, median step time, tokens/s, tokens/s
relative to N=1, per-rank peak RSS and per-rank parameter + optimizer elements. Every rank first loads the whole
float32 checkpoint and only then shards it, so the peak RSS includes one full copy of the model per rank; the
table's "RSS after steps" (resident now, `/proc/self/statm`) and the held elements show what sharding saves.

The batch is synthetic and GRPO-like, fixed by `--seed`: `--prompts` groups (8) of `--group` completions (8), each
prompt ~`--prompt-len` tokens (64; uniform in ±1/8), completions uniform in [`--min-completion`, `--max-completion`]
(32-128) tokens, random token ids, old log-probabilities and advantages. Precision is the training default:
`model.dtype: bfloat16` with `trainer.precision: bf16_params` (bf16 compute over float32 masters; sharded, FSDP2
holds float32 shards and computes in bf16), `trainer.micro_batch_size` 8, the shared-prompt layout.

Threads: each rank gets `torch_threads` = usable cores // N, so every N uses the same cores (on a 2-core machine:
2 threads for N=1, 1 thread per rank for N=2). On one machine N > 1 cannot be faster than N=1 by more than what
splitting the cores gains; what it shows is the overhead of sharding (gathers, reduce-scatters, padding passes)
and the memory each rank saves. Timings are ratios measured side by side in one run: compare the rows of one
invocation, not seconds across machines.

Trained tokens per step: the prompt + completion tokens the model processes, i.e. in the shared-prompt layout each
distinct prompt once per micro-batch plus every completion (in the padded / packed layouts every sequence's
prompt + completion); padding and zero-weight padding passes are not counted. tokens/s = trained tokens per step
/ median step time (all ranks together).

`--gpu-model qwen3-0.6b` builds a random model with Qwen3-0.6B's shapes (hidden 1024, 28 layers, 16 heads, 8 KV
heads, head_dim 128, intermediate 3072, vocab 151936, tied embeddings; `--layers` overrides the depth for a smoke
run) with `transformers.Qwen3Config` + `AutoModelForCausalLM.from_config`, saves it with a small tokenizer in a
temporary directory, and also reports model FLOPs utilisation:

    MFU = 6 · (non-embedding parameters + lm_head) · tokens/s / (N · peak)

with lm_head = vocab · hidden (tied to the embedding, counted once as the output projection), attention FLOPs not
counted, and peak = the bf16 dense FLOP/s of one accelerator: 989e12 for an H200 (or H100); `--peak-tflops`
overrides it, and on a CPU or an unknown GPU MFU is left out. (The learner runs the output layer on loss-carrying
completion positions only, so 6·F·tokens slightly over-counts the lm_head's share for prompt tokens.) On GPUs each
rank takes its own device (`LOCAL_RANK`), so N is at most the number of GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # under torchrun sys.path[0] is benchmarks/, and a GPU box may have no install
    sys.path.insert(0, str(ROOT))

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
RESULT_PREFIX = "SCALING_RESULT "
GPU_MODELS = {
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                       tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1_000_000.0),
}


# ---- the batch ----------------------------------------------------------------------------------------------------


def synthetic_batch(vocab: int, prompts: int, group: int, prompt_len: int, min_completion: int,
                    max_completion: int, seed: int):
    """`prompts` groups of `group` completions sharing their prompt (GRPO-like), fixed by `seed`."""
    from rl.learner import TrainBatch

    rng = random.Random(seed)
    spread = max(prompt_len // 8, 0)
    prompt_ids, completion_ids = [], []
    for _ in range(prompts):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(prompt_len - spread, prompt_len + spread))]
        for _ in range(group):
            prompt_ids.append(prompt)
            completion_ids.append([rng.randrange(3, vocab)
                                   for _ in range(rng.randint(min_completion, max_completion))])
    old = [[-2.0 + rng.uniform(-0.5, 0.5) for _ in c] for c in completion_ids]
    advantages = [rng.uniform(-1, 1) for _ in completion_ids]
    return TrainBatch(prompt_ids, completion_ids, old, advantages, group_size=group)


def trained_tokens(batch, layout: str, micro_batch_size: int, token_budget: int | None, world_size: int) -> int:
    """Tokens the learner processes in one step over all ranks, replaying its plan (`Learner._micro_batches`):
    shared layout, each distinct prompt once per micro-batch plus the completions; else prompt + completion of
    every sequence. Padding passes carry no tokens."""
    from rl.batching import plan_micro_batches
    from rl.distributed import World, split_groups

    total = 0
    for rank in range(world_size):
        mine = split_groups(len(batch), batch.group_size, World(rank, world_size)) if world_size > 1 \
            else list(range(len(batch)))
        plan = plan_micro_batches([batch.seq_len(i) for i in mine], micro_batch_size=micro_batch_size,
                                  token_budget=token_budget, keep_order=layout == "shared")
        for idx in plan:
            seqs = [mine[k] for k in idx]
            total += sum(len(batch.completion_ids[i]) for i in seqs)
            if layout == "shared":
                total += sum(len(batch.prompt_ids[i]) for i in {i // batch.group_size: i for i in seqs}.values())
            else:
                total += sum(len(batch.prompt_ids[i]) for i in seqs)
    return total


# ---- the worker (one rank, under torchrun) ------------------------------------------------------------------------


def flop_params(model) -> int:
    """Non-embedding parameters + the output projection (vocab · hidden, once, when tied to the embedding); a
    sharded parameter (DTensor) counts its full size."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = sum(p.numel() for name, p in base.named_parameters() if "embed_tokens" not in name)
    cfg = base.config
    return n + (cfg.vocab_size * cfg.hidden_size if cfg.tie_word_embeddings else 0)


def held(learner) -> dict:
    """Elements (and bytes) this rank holds: model parameters (a shard when sharded), float32 masters (unsharded
    bf16 training only) and AdamW's moments."""
    from rl.distributed import local_numel

    def nbytes(ts) -> int:
        return sum((t.to_local() if hasattr(t, "to_local") else t).nbytes for t in ts)

    params = list(learner.policy.model.parameters())
    masters = list(learner.masters.masters) if learner.masters is not None else []
    state = [t for s in learner.optimizer.state.values() for k, t in s.items() if k != "step"]
    out = {"params": local_numel(params), "masters": local_numel(masters), "optimizer": local_numel(state)}
    out["total"] = sum(out.values())
    out["bytes"] = nbytes(params) + nbytes(masters) + nbytes(state)
    return out


def rss_now_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
    from rl.learner import Learner, micro_batch_layout

    model_cfg = ModelConfig(path=args.model_path, dtype="bfloat16")
    trainer_cfg = TrainerConfig(max_steps=args.steps + 1, lr=1e-6, micro_batch_size=args.micro_batch_size,
                                token_budget=args.token_budget, torch_threads=args.threads, seed=args.seed)
    learner = Learner(args.model_path, model_cfg, trainer_cfg, AlgorithmConfig(), temperature=1.0,
                      max_completion_tokens=args.max_completion)
    world = learner.world
    cuda = learner.device.type == "cuda"
    batch = synthetic_batch(learner.policy.model.config.vocab_size, args.prompts, args.group, args.prompt_len,
                            args.min_completion, args.max_completion, args.seed)
    layout = micro_batch_layout(trainer_cfg, model_cfg)
    tokens = trained_tokens(batch, layout, args.micro_batch_size, args.token_budget, world.size)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()
        if world.sharded:
            dist.barrier()

    times = []
    for step in range(args.steps + 1):  # step 0: warm-up
        sync()
        start = time.perf_counter()
        learner.train(batch, step=step + 1)
        sync()
        if step:
            times.append(time.perf_counter() - start)

    mine = {"rank": world.rank, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "rss_after_gib": rss_now_gib(), "held": held(learner),
            "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    ranks = [mine]
    if world.sharded:
        ranks = [None] * world.size
        dist.all_gather_object(ranks, mine)
    if world.rank == 0:
        result = {"world_size": world.size, "threads": args.threads, "layout": layout, "step_s": times,
                  "tokens_per_step": tokens, "sequences": len(batch),
                  "sequence_tokens": sum(batch.seq_len(i) for i in range(len(batch))),
                  "flop_params": flop_params(learner.policy.model),
                  "device": torch.cuda.get_device_name() if cuda else "cpu", "ranks": ranks}
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    if world.sharded:
        dist.destroy_process_group()


# ---- the driver ---------------------------------------------------------------------------------------------------


def build_gpu_model(name: str, layers: int | None, out: Path) -> None:
    """A random model with `GPU_MODELS[name]`'s shapes (bf16 safetensors) + a small tokenizer in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from rl.models import _build_tiny_tokenizer

    shape = dict(GPU_MODELS[name])
    if layers is not None:
        shape["num_hidden_layers"] = layers
    config = Qwen3Config(**shape, initializer_range=0.02, architectures=["Qwen3ForCausalLM"])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    _build_tiny_tokenizer(512).save_pretrained(out)  # the learner loads one; the batch's ids are random anyway
    del model


def run_worker(n: int, threads: int, model_path: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           "--worker", "--model-path", model_path, "--threads", str(threads), "--steps", str(args.steps),
           "--prompts", str(args.prompts), "--group", str(args.group), "--prompt-len", str(args.prompt_len),
           "--min-completion", str(args.min_completion), "--max-completion", str(args.max_completion),
           "--micro-batch-size", str(args.micro_batch_size), "--seed", str(args.seed)]
    if args.token_budget is not None:
        cmd += ["--token-budget", str(args.token_budget)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"N={n}: exit {proc.returncode}; output tail:\n{proc.stdout[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, nargs="+", default=[1, 2], help="ranks N to compare")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per N, interleaved")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="alias, local checkpoint or hub id")
    parser.add_argument("--gpu-model", choices=sorted(GPU_MODELS), default=None,
                        help="a random model of this shape instead of --model (reports MFU on a known GPU)")
    parser.add_argument("--layers", type=int, default=None, help="--gpu-model's depth (smoke runs)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak per device, for MFU")
    parser.add_argument("--prompts", type=int, default=8, help="prompt groups per batch")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--min-completion", type=int, default=32)
    parser.add_argument("--max-completion", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--token-budget", type=int, default=None, help="packed micro-batches of this many tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from rl.threads import usable_cores

    cores = usable_cores()
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if gpus and max(args.learners) > gpus:
        parser.error(f"--learners {max(args.learners)} needs as many GPUs; this machine has {gpus}")
    threads = {n: max(1, cores // n) for n in args.learners}
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        if args.gpu_model:
            model_path, label = str(Path(tmp) / "model"), f"random {args.gpu_model}"
            if args.layers is not None:
                label += f", {args.layers} layers"
            build_gpu_model(args.gpu_model, args.layers, Path(model_path))
        else:
            from rl.models import resolve_model_path

            model_path, label = resolve_model_path(args.model), args.model
        print(f"model: {label}; batch: {args.prompts} prompts x {args.group} completions, prompt ~{args.prompt_len},"
              f" completions {args.min_completion}-{args.max_completion} tokens, seed {args.seed}; bf16 "
              f"(bf16_params), micro-batch {args.micro_batch_size}"
              + (f", token budget {args.token_budget}" if args.token_budget else "")
              + f"; {args.steps} timed steps after 1 warm-up, {args.rounds} interleaved rounds", flush=True)
        print(f"threads: {cores} usable cores split across ranks: "
              + ", ".join(f"N={n}: {t} per rank" for n, t in threads.items()), flush=True)
        runs: dict[int, list[dict]] = {n: [] for n in args.learners}
        for r in range(args.rounds):
            for n in args.learners:
                result = run_worker(n, threads[n], model_path, args)
                runs[n].append(result)
                print(f"round {r + 1}, N={n}: step times {[round(t, 3) for t in result['step_s']]} s "
                      f"(median {statistics.median(result['step_s']):.3f} s)", flush=True)
    report(runs, args)


def report(runs: dict[int, list[dict]], args: argparse.Namespace) -> None:
    first = next(iter(runs.values()))[0]
    device = first["device"]
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
    print(f"\ndevice: {device}; layout {first['layout']}; {first['sequences']} sequences, "
          f"{first['tokens_per_step']:,} trained tokens per step (prompt once per micro-batch in the shared layout "
          f"+ completions; {first['sequence_tokens']:,} as prompt + completion per sequence)")
    median = {n: statistics.median(t for r in rs for t in r["step_s"]) for n, rs in runs.items()}
    tps = {n: runs[n][0]["tokens_per_step"] / median[n] for n in runs}
    base = 1 if 1 in runs else next(iter(runs))
    header = ["N", "threads/rank", "median step", "tokens/s", f"tokens/s vs N={base}",
              "peak RSS per rank (GiB)", "RSS after steps per rank (GiB)", "param+optimizer elements per rank",
              "param+optimizer GiB per rank"]
    if peak:
        header.append("MFU")
    if device != "cpu":
        header.append("GPU peak alloc per rank (GiB)")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for n, rs in runs.items():
        ranks = sorted(rs[0]["ranks"], key=lambda x: x["rank"])
        peak_rss = [max(r["ranks"][k]["peak_rss_gib"] for r in rs) for k in range(len(ranks))]
        after = [max(r["ranks"][k]["rss_after_gib"] for r in rs) for k in range(len(ranks))]
        row = [str(n), str(rs[0]["threads"]), f"{median[n]:.3f} s", f"{tps[n]:,.0f}", f"{tps[n] / tps[base]:.2f}",
               " / ".join(f"{g:.2f}" for g in peak_rss), " / ".join(f"{g:.2f}" for g in after),
               " / ".join(f"{x['held']['total']:,}" for x in ranks),
               " / ".join(f"{x['held']['bytes'] / 2**30:.3f}" for x in ranks)]
        if peak:
            row.append(f"{6 * rs[0]['flop_params'] * tps[n] / (n * peak * 1e12):.2%}")
        if device != "cpu":
            row.append(" / ".join(f"{x['cuda_peak_gib']:.2f}" for x in ranks))
        print("| " + " | ".join(row) + " |")
    held = {n: sorted(rs[0]["ranks"], key=lambda x: x["rank"])[0]["held"] for n, rs in runs.items()}
    print("elements per rank = parameters held (bf16 model, or a float32 FSDP2 shard) + float32 masters "
          "(unsharded only) + AdamW moments: "
          + "; ".join(f"N={n}: {h['params']:,} + {h['masters']:,} + {h['optimizer']:,}"
                      for n, h in held.items()))
    if peak:
        print(f"MFU = 6 * F * tokens/s / (N * peak), F = non-embedding params + lm_head = {first['flop_params']:,}, "
              f"peak = {peak:g}e12 bf16 FLOP/s per device")
    print(json.dumps({"median_step_s": {n: round(v, 4) for n, v in median.items()},
                      "tokens_per_s": {n: round(v, 1) for n, v in tps.items()}}))


if __name__ == "__main__":
    main()
