"""Learner throughput and MFU: `python benchmarks/learner_throughput.py [--device cuda] [--sequences 256]`.

Builds a randomly initialised model with SmolLM2-135M's architecture (no download needed), then times
`Learner.train` (forward + backward + AdamW, bf16 autocast over float32 master weights, micro-batching) on a
synthetic GRPO batch. Reports trained tokens/s and model FLOPs utilisation, MFU = 6·N·tokens / time / peak,
with N the non-embedding parameter count plus the output projection (attention FLOPs are not counted).
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


def synthetic_batch(sequences: int, prompt_len: int, completion_len: int, seed: int = 0):
    from rl.learner import TrainBatch

    rng = random.Random(seed)
    prompts = [[rng.randrange(100, 49000) for _ in range(prompt_len)] for _ in range(sequences)]
    completions = [[rng.randrange(100, 49000) for _ in range(completion_len)] for _ in range(sequences)]
    return TrainBatch(prompts, completions, [[-2.0] * completion_len for _ in completions],
                      [rng.uniform(-1, 1) for _ in range(sequences)])


def main() -> None:
    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
    from rl.learner import Learner

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequences", type=int, default=64, help="B×G sequences per step")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--completion-len", type=int, default=256)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as path:
        n_params = smollm2_like(path)
        learner = Learner(path, ModelConfig(path=path), TrainerConfig(max_steps=1, lr=1e-6,
                          micro_batch_size=args.micro_batch_size), AlgorithmConfig(), temperature=1.0)
        batch = synthetic_batch(args.sequences, args.prompt_len, args.completion_len)
        tokens = args.sequences * (args.prompt_len + args.completion_len)
        learner.train(batch)  # warm-up
        times = []
        for _ in range(args.steps):
            if learner.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            learner.train(batch)
            if learner.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    device = torch.cuda.get_device_name() if learner.device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
    tflops = 6 * n_params * tokens / step / 1e12
    result = {"device": device, "sequences": args.sequences, "tokens_per_step": tokens,
              "micro_batch_size": args.micro_batch_size, "median_step_s": round(step, 3),
              "tokens_per_s": round(tokens / step), "model_tflops": round(tflops, 2),
              "mfu": round(tflops / peak, 4) if peak else None,
              "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device != "cpu" else None}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
