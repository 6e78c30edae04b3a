#!/usr/bin/env bash
# Three GRPO variants on the arithmetic task with SmolLM2-135M-Instruct, same base config, same seed, run one
# after the other (CPU): plain GRPO, DAPO-style, and GRPO + adaptive entropy control. Then one PNG of the curves.
#   bash examples/grpo_variants/run.sh [STEPS]      (from the repository root; results in runs/variants/)
set -euo pipefail
STEPS=${1:-10}
BASE=(--config examples/arithmetic/config.yaml trainer.max_steps=$STEPS trainer.save_every=$STEPS
      eval.every=$STEPS eval.max_prompts=100)
PY=${PYTHON:-.venv/bin/python}
# plain GRPO: symmetric clip 0.2, per-sequence mean then mean over sequences (the original GRPO loss)
$PY -m rl.grpo "${BASE[@]}" output_dir=runs/variants/grpo \
    algorithm.loss.eps_high=0.2 algorithm.loss.aggregation=seq-mean-token-mean
# DAPO-style: clip-higher 0.28, global token-mean, dynamic sampling (up to 3 generation rounds per step)
$PY -m rl.grpo "${BASE[@]}" output_dir=runs/variants/dapo \
    algorithm.loss.eps_high=0.28 algorithm.loss.aggregation=token-mean \
    algorithm.dynamic_sampling=true algorithm.dynamic_sampling_rounds=3
# plain GRPO + adaptive entropy control (Skywork-OR1) toward a target of 1.5 nats per token (the start is ~1.9)
$PY -m rl.grpo "${BASE[@]}" output_dir=runs/variants/grpo_entropy \
    algorithm.loss.eps_high=0.2 algorithm.loss.aggregation=seq-mean-token-mean \
    algorithm.entropy.mode=adaptive algorithm.entropy.coef=0.0 algorithm.entropy.target=1.5 \
    algorithm.entropy.delta=0.05 algorithm.entropy.coef_max=0.3
$PY examples/grpo_variants/plot.py runs/variants/grpo runs/variants/dapo runs/variants/grpo_entropy \
    --out examples/grpo_variants/curves.png
