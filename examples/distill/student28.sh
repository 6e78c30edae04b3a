#!/usr/bin/env bash
# The distillation recipe that reaches the teacher (README.md here, first section): a student with 28 of
# SmolLM2-135M-Instruct's 30 layers, off-policy distillation (the teacher's verified answers → SFT), and the
# baseline: GRPO on the same student for the same wall-clock time. From the repository root:
#   bash examples/distill/student28.sh
# Needs the teacher, a checkpoint of `python -m rl.grpo --config examples/arithmetic/config.yaml`: TEACHER=runs/arithmetic/checkpoints/step_30
# by default. Held-out accuracy: greedy, exact sum in \boxed{}, the 200 2-digit additions of
# datasets/arithmetic/test.jsonl (runs/distill/eval/<name>/results.json).
set -euo pipefail
source "$(dirname "$0")/common.sh"

$PY -m distill.shrink smollm2-135m-instruct runs/distill/smollm2-28 --layers 28 --keep-ends 4
evaluate "$TEACHER" teacher
evaluate runs/distill/smollm2-28 student-28
start=$(date +%s)
$PY -m distill.offpolicy --config examples/distill/offpolicy.yml teacher="$TEACHER" \
    student=runs/distill/smollm2-28 output_dir=runs/distill/offpolicy-28
seconds=$(( $(date +%s) - start ))
echo "$seconds" | tee runs/distill/offpolicy-28_seconds.txt
evaluate runs/distill/offpolicy-28/model sft-28
# the baseline: GRPO on the same 28-layer student, stopped after the seconds distillation took
timeout --signal=INT "$seconds" $PY -m rl.grpo --config examples/distill/grpo.yaml \
    model.path=runs/distill/smollm2-28 output_dir=runs/distill/grpo-28 || true
evaluate "$(ls -d runs/distill/grpo-28/checkpoints/step_*[0-9] | sort -t_ -k2 -n | tail -1)" grpo-28-last
