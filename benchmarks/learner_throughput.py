"""Learner throughput and MFU: `python benchmarks/learner_throughput.py [--sequences 256] [--ragged] [--compare-packing]`.

Builds a randomly initialised model with SmolLM2-135M's architecture (no download needed), then times
`Learner.train` (forward + backward + AdamW, bf16 parameters over float32 master weights, micro-batching) on a
synthetic GRPO batch. Reports trained tokens/s (real tokens: padding is not counted) and model FLOPs
utilisation, MFU = 6·N·tokens / time / peak, with N the non-embedding parameter count plus the output
projection (attention FLOPs are not counted). `--ragged` draws completion lengths uniformly in
[completion_len / 8, completion_len], as GRPO batches are; `--compare-packing` times the same batch padded
(micro-batches of `--micro-batch-size` sequences) and packed (`trainer.token_budget` = micro-batch size ×
(prompt + completion length), the padded layout's worst case) one after the other and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def smollm2_like(path: str) -> int:
    """Write a random model with SmolLM2-135M's shapes to `path`; returns its FLOP-relevant parameter count."""
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    vocab = {f"t{i}": i for i in range(49152)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")))
    tok.save_pretrained(path)
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    return non_embedding + config.vocab_size * config.hidden_size  # + the (tied) output projection


def synthetic_batch(sequences: int, prompt_len: int, completion_len: int, ragged: bool = False, seed: int = 0):
    from rl.learner import TrainBatch

    rng = random.Random(seed)
    lengths = [rng.randint(max(completion_len // 8, 1), completion_len) if ragged else completion_len
               for _ in range(sequences)]
    prompts = [[rng.randrange(100, 49000) for _ in range(prompt_len)] for _ in range(sequences)]
    completions = [[rng.randrange(100, 49000) for _ in range(n)] for n in lengths]
    return TrainBatch(prompts, completions, [[-2.0] * len(c) for c in completions],
                      [rng.uniform(-1, 1) for _ in range(sequences)])


def time_learner(path: str, batch, steps: int, **trainer) -> float:
    """Median seconds of `Learner.train` over `steps` steps after one warm-up step."""
    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
    from rl.learner import Learner

    learner = Learner(path, ModelConfig(path=path), TrainerConfig(max_steps=1, lr=1e-6, **trainer),
                      AlgorithmConfig(), temperature=1.0)
    learner.train(batch)  # warm-up
    times = []
    for _ in range(steps):
        if learner.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        learner.train(batch)
        if learner.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    del learner
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64, help="B×G sequences per step")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--completion-len", type=int, default=256)
    parser.add_argument("--ragged", action="store_true", help="completion lengths uniform in [len/8, len]")
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--token-budget", type=int, default=None, help="pack micro-batches up to this many tokens")
    parser.add_argument("--compare-packing", action="store_true", help="padded vs packed, same batch, one run")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    args = parser.parse_args()

    batch = synthetic_batch(args.sequences, args.prompt_len, args.completion_len, args.ragged)
    tokens = sum(batch.seq_len(i) for i in range(len(batch)))
    modes = {"padded": {"micro_batch_size": args.micro_batch_size, "token_budget": args.token_budget}}
    if args.compare_packing:
        budget = args.micro_batch_size * (args.prompt_len + args.completion_len)
        modes = {"padded": {"micro_batch_size": args.micro_batch_size},
                 "packed": {"micro_batch_size": args.micro_batch_size, "token_budget": budget}}
    with tempfile.TemporaryDirectory() as path:
        n_params = smollm2_like(path)
        steps = {name: time_learner(path, batch, args.steps, **trainer) for name, trainer in modes.items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
    for name, step in steps.items():
        tflops = 6 * n_params * tokens / step / 1e12
        result = {"mode": name, "device": device, "sequences": args.sequences, "real_tokens_per_step": tokens,
                  "ragged": args.ragged, **modes[name], "median_step_s": round(step, 3),
                  "tokens_per_s": round(tokens / step), "model_tflops": round(tflops, 2),
                  "mfu": round(tflops / peak, 4) if peak else None,
                  "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device != "cpu" else None}
        print(json.dumps(result))
    if len(steps) == 2:
        print(f"packed_over_padded_tokens_per_s={steps['padded'] / steps['packed']:.2f}")


if __name__ == "__main__":
    main()
