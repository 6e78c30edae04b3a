"""Evaluation: `python -m rl.eval --config eval.yaml [key=value ...]` (`--help` lists every key, `--check` validates).

What it measures (each part optional, config in `rl/eval/config.py`):
- **pass@k** (`pass_k:`, `rl/eval/pass_k.py`): `sampling.n` samples per prompt; a sample is correct when the
  *first* configured reward (any `rewards:` entry: built-in verifier, user function, judge, reward model) is ≥
  `correct_threshold` (default 1.0, i.e. a 0/1 verifier said yes; a reward that returns None counts as 0); the
  unbiased estimator of Chen et al. 2021, averaged over prompts.
- **Thinking-budget sweep** (`budget_sweep:`, `rl/eval/budget_sweep.py`): for each budget b, prompts rendered in
  thinking mode (`rl.chat`) and sampled through `rl.rollout.budget.generate_with_budget` (thinking cut at b tokens,
  Qwen3's stop-thinking text inserted, then at most `max_answer_tokens` of answer); b = 0 means non-thinking mode
  (the empty think block pre-filled). Writes a table with one row per budget (stdout, `budget_sweep.json`,
  `budget_sweep.csv`) and `budget_curve.png` (accuracy vs budget, as in the Qwen3 report).
- **Mode following** (`mode_check:`): see `rl/eval/mode_following.py`.
- **With tools** (`tool_use:`, pass@k only): samples are multi-turn trajectories as in a GRPO run with the same
  tools (`rl/rollout/multiturn.py`); results add `tools/call_rate` and the other tool metrics.

Engines (`engine.backend`): `vllm` (default) or `hf`, built directly in this process (no Ray). Everything that can be
checked (config, model path, data rows, rewards and their columns, chat template, prompt lengths) is checked before
the model loads (`rl/eval/common.py`, shared with `python -m rl.datatools`). Outputs in `output_dir`: config.yaml
(resolved), results.json, samples.jsonl (pass@k samples with their rewards), the sweep files and
mode_following.{json,jsonl}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config_io import build_arg_parser, dump_config, run_cli
from rl.data import render_prompts, tokenize_prompts
from rl.eval.budget_sweep import run_budget_sweep
from rl.eval.common import Inputs, build_engine, check_context, check_summary, load_inputs, load_tokenizer
from rl.eval.config import EvalConfig
from rl.eval.mode_following import run_mode_check
from rl.eval.pass_k import run_pass_k


@dataclass
class Prepared:
    """Everything rendered and tokenized before the model loads."""

    inputs: Inputs
    prompts: dict[str, tuple[list[str], list[list[int]]]]  # "pass_k" / "think" / "no_think" → (texts, ids)
    max_model_len: int


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m rl.eval", EvalConfig, __doc__.split("\n\n")[0])
    loaded = run_cli(parser, EvalConfig, argv, prepare, check_summary)
    if loaded:
        evaluate(*loaded)


def prepare(cfg: EvalConfig) -> Prepared:
    """Fail fast, naming the key / file / row; load the tokenizer (not the model) and render every prompt."""
    inputs = load_inputs(cfg.model, cfg.data, cfg.rewards, cfg.tool_use)
    sweep = cfg.budget_sweep
    load_tokenizer(inputs, cfg.model, cfg.data, modes=bool(sweep or cfg.mode_check or cfg.data.think_mode != "off"),
                   budget=bool(sweep and max(sweep.budgets) > 0))
    d, tok, tool_use = cfg.data, inputs.tokenizer, inputs.tool_use
    if tool_use:  # ValueError if the template cannot render tool turns
        tool_use.bind(tok, enable_thinking=False if d.think_mode == "no_think" else None)
    wanted = ([("pass_k", d.think_mode)] if cfg.pass_k else []) + [(m, m) for m in _sweep_modes(cfg)]
    if cfg.mode_check and not wanted:
        wanted = [("mode_check", "think")]  # only to size the context from the questions' length
    prompts, longest = {}, 0
    for key, mode in wanted:
        texts, _ = render_prompts(inputs.rows, tok, system_prompt=d.system_prompt, think_mode=mode, think_prob=0.0,
                                  seed=0, tools=tool_use.schemas if tool_use else None)  # checks they render
        ids = tokenize_prompts(tok, texts, d.max_prompt_tokens, d.path)
        prompts[key] = (texts, ids)
        longest = max(longest, max(map(len, ids)))
    sampled = cfg.sampling.max_new_tokens
    completion = max([(tool_use.max_completion_tokens(sampled) if tool_use else sampled) if cfg.pass_k else 0,
                      _longest_budgeted(cfg, tok)])
    needed = longest + completion
    if cfg.mode_check:
        needed = max(needed, cfg.mode_check.turns * (longest + cfg.mode_check.max_new_tokens + 16))
    return Prepared(inputs, prompts, check_context(cfg.engine, needed))


def _sweep_modes(cfg: EvalConfig) -> list[str]:
    if not cfg.budget_sweep:
        return []
    budgets = cfg.budget_sweep.budgets
    return (["no_think"] if 0 in budgets else []) + (["think"] if max(budgets) > 0 else [])


def _longest_budgeted(cfg: EvalConfig, tokenizer: Any) -> int:
    sweep = cfg.budget_sweep
    if not sweep:
        return 0
    if max(sweep.budgets) == 0:
        return sweep.max_answer_tokens
    from rl.rollout.budget import thinking_budget_for

    return thinking_budget_for(tokenizer, max(sweep.budgets), sweep.max_answer_tokens).max_completion_tokens


def evaluate(cfg: EvalConfig, prepared: Prepared) -> dict[str, Any]:
    """Run every configured part; returns (and writes) results.json's content."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    inputs = prepared.inputs
    engine = build_engine(inputs.model_path, cfg.model, cfg.engine, prepared.max_model_len)
    results: dict[str, Any] = {"model": cfg.model.path, "prompts": len(inputs.rows)}
    if cfg.pass_k:
        try:
            results["pass_k"] = run_pass_k(cfg, inputs, prepared.prompts["pass_k"], engine, out)
        finally:
            if inputs.tool_use:
                inputs.tool_use.close()
        shown = [k for k in results["pass_k"] if k.startswith(("pass@", "tools/call_rate", "tools/calls_mean"))]
        print("pass@k: " + "  ".join(f"{k} {results['pass_k'][k]:.4f}" for k in shown))
    if cfg.budget_sweep:
        results["budget_sweep"] = run_budget_sweep(cfg, inputs, prepared.prompts, engine, out)
    if cfg.mode_check:
        results["mode_following"] = run_mode_check(cfg, inputs, engine, prepared.max_model_len, out)
        mf = results["mode_following"]
        print(f"mode following: {mf['score']:.4f} of {mf['turns']} turns "
              f"(think {mf['think_score']}, no_think {mf['no_think_score']})")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")
    return results
