"""Strong-to-weak distillation (Qwen3's recipe), built on `rl/`.

- `python -m distill.offpolicy`: the teacher writes responses (both think modes, optionally only verified ones)
  into SFT JSONL, then the student is fine-tuned on it with TRL's `SFTTrainer` (completion-only loss).
- `python -m distill.onpolicy`: the student samples, the teacher scores the same tokens, and the learner
  minimises a distillation loss (`distill/losses.py`), optionally mixed with task rewards.

Files: `losses.py` (pure maths), `config.py` (pydantic), `vocab.py` (same-tokenizer check), `teacher.py` (the
teacher's scoring), `learner.py` (the learner's objective), `actors.py` (the teacher's Ray actor), `onpolicy.py` /
`offpolicy.py` (drivers), `sft_data.py` (the `messages` JSONL format), `shrink.py` (a student from a teacher by dropping layers).
`rl/` never imports this package.
"""
