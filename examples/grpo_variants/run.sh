#!/usr/bin/env bash
# Three GRPO variants on the arithmetic task with SmolLM2-135M-Instruct, same base config
# (examples/arithmetic/curriculum.yaml: 20 scaffolded steps, then prompts with and without the scaffold, held-out accuracy in
# both formats), same seed, run one after the other (CPU): plain GRPO, DAPO-style, and the entropy-held recipe.
# Then one PNG of the reward, entropy and held-out accuracy curves.
#   bash examples/grpo_variants/run.sh [STEPS]      (from the repository root; results in runs/variants/)
set -euo pipefail
STEPS=${1:-60}
BASE=(--config examples/arithmetic/curriculum.yaml trainer.max_steps=$STEPS)
PY=${PYTHON:-.venv/bin/python}
NO_ENTROPY=(algorithm.entropy.mode=none)
# plain GRPO: symmetric clip 0.2, per-sequence mean then mean over sequences (the original GRPO loss)
$PY -m rl.grpo "${BASE[@]}" "${NO_ENTROPY[@]}" output_dir=runs/variants/grpo \
    algorithm.loss.eps_high=0.2 algorithm.loss.aggregation=seq-mean-token-mean
# DAPO-style: clip-higher 0.28, global token-mean, dynamic sampling (up to 3 generation rounds per step)
$PY -m rl.grpo "${BASE[@]}" "${NO_ENTROPY[@]}" output_dir=runs/variants/dapo \
    algorithm.loss.eps_high=0.28 algorithm.loss.aggregation=token-mean \
    algorithm.dynamic_sampling=true algorithm.dynamic_sampling_rounds=3
# entropy held: the config as it is — clip-higher 0.28, token-mean, adaptive entropy control toward 1.0 nat/token
$PY -m rl.grpo "${BASE[@]}" output_dir=runs/variants/entropy_held
$PY examples/grpo_variants/plot.py runs/variants/grpo runs/variants/dapo runs/variants/entropy_held \
    --out examples/grpo_variants/curves.png
