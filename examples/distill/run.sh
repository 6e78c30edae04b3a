#!/usr/bin/env bash
# Every stage of the distillation demo, one after the other (CPU, from the repository root; outputs in runs/distill/):
#   bash examples/distill/run.sh
# Needs the teacher, a checkpoint of `python -m rl.grpo --config examples/arithmetic/config.yaml`: TEACHER=runs/arithmetic/checkpoints/step_30
# by default. Each stage's held-out accuracy: greedy, exact sum in \boxed{}, the 200 2-digit additions of
# datasets/arithmetic/test.jsonl (rl.eval, or the runs' own evaluations).
set -euo pipefail
source "$(dirname "$0")/common.sh"

timed_distill() {  # timed_distill CONFIG NAME [key=value ...] → runs/distill/NAME_seconds.txt
  local config=$1 name=$2 start
  shift 2
  start=$(date +%s)
  $PY -m distill.onpolicy --config "$config" teacher.path="$TEACHER" "$@"
  echo $(( $(date +%s) - start )) | tee "runs/distill/${name}_seconds.txt"
}

grpo_baseline() {  # grpo_baseline SECONDS STUDENT OUTDIR NAME: GRPO on STUDENT, stopped after SECONDS; its last
  # checkpoint (saved every 5 steps) is evaluated afterwards
  timeout --signal=INT "$1" $PY -m rl.grpo --config examples/distill/grpo.yaml model.path="$2" output_dir="$3" || true
  evaluate "$(ls -d "$3"/checkpoints/step_*[0-9] | sort -t_ -k2 -n | tail -1)" "$4"
}

# 1. the student: SmolLM2-135M-Instruct with 24 of its 30 decoder layers (the 6 dropped evenly from the middle)
$PY -m distill.shrink smollm2-135m-instruct runs/distill/smollm2-24 --layers 24 --keep-ends 4
evaluate "$TEACHER" teacher
evaluate runs/distill/smollm2-24 student-24
# 2. on-policy distillation straight from that student: GKD, λ = 0.5 (held-out eval at steps 0, 20, ..., 80),
#    then GRPO on the same student for the same wall-clock time
timed_distill examples/distill/gkd.yml gkd-raw
grpo_baseline "$(cat runs/distill/gkd-raw_seconds.txt)" runs/distill/smollm2-24 runs/distill/grpo-raw grpo-raw-last
# 3. off-policy: the teacher answers the 2,400 training prompts once, verified answers only → SFT
$PY -m distill.offpolicy --config examples/distill/offpolicy.yml teacher="$TEACHER"
# 4. on-policy distillation from the SFT student (held-out eval at steps 0, 10, 20, 30), then GRPO on the SFT
#    student for the same wall-clock time
timed_distill examples/distill/config.yml onpolicy
grpo_baseline "$(cat runs/distill/onpolicy_seconds.txt)" runs/distill/offpolicy/model runs/distill/grpo grpo-last
evaluate runs/distill/onpolicy/checkpoints/step_30 onpolicy-last
