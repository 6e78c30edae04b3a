#!/usr/bin/env bash
# GRPO variants on the arithmetic curriculum with SmolLM2-135M-Instruct (examples/arithmetic/curriculum.yaml: 20
# scaffolded steps, then prompts with and without the scaffold; held-out accuracy in both formats), same seed, run
# one after the other (CPU, ~17-22 min each on 2 cores), then one PNG of reward, entropy and held-out accuracy.
#   bash examples/grpo_variants/run.sh [STEPS] [SEED]    (from the repository root; results in runs/variants/)
set -euo pipefail
STEPS=${1:-60}
SEED=${2:-1}
BASE=(--config examples/arithmetic/curriculum.yaml trainer.max_steps=$STEPS trainer.seed=$SEED algorithm.entropy.mode=none
      algorithm.dynamic_sampling=false)
PY=${PYTHON:-.venv/bin/python}
OUT=runs/variants
# plain GRPO: symmetric clip 0.2, per-sequence mean then mean over sequences (the original GRPO loss)
$PY -m rl.grpo "${BASE[@]}" output_dir=$OUT/grpo algorithm.loss.eps_high=0.2 algorithm.loss.aggregation=seq-mean-token-mean
# clip-higher 0.28, global token-mean (the demo without dynamic sampling)
$PY -m rl.grpo "${BASE[@]}" output_dir=$OUT/clip_higher
# DAPO-style, the demo as committed: the same + dynamic sampling (groups with equal rewards refilled, <= 3 rounds)
$PY -m rl.grpo "${BASE[@]}" output_dir=$OUT/dapo algorithm.dynamic_sampling=true
# entropy bonus under proportional control: coefficient 1.0·(1 − H/0.8), none at or above 0.8 nats/token
$PY -m rl.grpo "${BASE[@]}" output_dir=$OUT/entropy_proportional algorithm.entropy.mode=proportional \
    algorithm.entropy.target=0.8 algorithm.entropy.coef_max=1.0
# Clip-Cov: the gradient of a random 10% of the tokens with logπ-advantage covariance in [0.5, 5] detached
$PY -m rl.grpo "${BASE[@]}" output_dir=$OUT/clip_cov algorithm.entropy.cov=clip_cov algorithm.entropy.cov_frac=0.1 \
    algorithm.entropy.cov_low=0.5
$PY examples/grpo_variants/plot.py $OUT/grpo $OUT/clip_higher $OUT/dapo $OUT/entropy_proportional $OUT/clip_cov \
    --out examples/grpo_variants/curriculum_variants.png
