# What run.sh and student28.sh share (sourced, from the repository root): the interpreter, the teacher, the
# demo's system prompt, and the held-out evaluation.
PY=${PYTHON:-.venv/bin/python}
TEACHER=${TEACHER:-runs/arithmetic/checkpoints/step_30}
SYSTEM='Solve the addition and give the result in \boxed{}. Example: What is 12 + 34? 12 + 34 = 46. \boxed{46}'
export RAY_memory_usage_threshold=${RAY_memory_usage_threshold:-0.98}

evaluate() {  # evaluate MODEL NAME → runs/distill/eval/NAME/results.json (pass@1 = held-out accuracy)
  $PY -m rl.eval output_dir="runs/distill/eval/$2" model.path="$1" data.path=datasets/arithmetic/test.jsonl \
      "data.system_prompt=$SYSTEM" sampling.max_new_tokens=48 "rewards=[{name: boxed_int}]"
}
