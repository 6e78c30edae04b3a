"""Evaluation: `python -m rl.eval --config eval.yaml [key=value ...]` (`--help` lists every key, `--check` validates).

What it measures (each part optional, config in `rl/eval_config.py`):
- **pass@k** (`pass_k:`): `sampling.n` samples per prompt; a sample is correct when the *first* configured reward
  (any `rewards:` entry: built-in verifier, user function, judge, reward model) is ≥ `correct_threshold` (default
  1.0, i.e. a 0/1 verifier said yes; a reward that returns None counts as 0). Per prompt with c correct of n,
  pass@k = 1 − C(n−c, k) / C(n, k), the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
  Trained on Code"), averaged over prompts; pass@1 is then the mean fraction correct.
- **Thinking-budget sweep** (`budget_sweep:`): for each budget b, prompts rendered in thinking mode (`rl.chat`) and
  sampled through `rl.rollout.budget.generate_with_budget` (thinking cut at b tokens, Qwen3's stop-thinking text
  inserted, then at most `max_answer_tokens` of answer); b = 0 means non-thinking mode (the empty think block
  pre-filled). Writes a table with one row per budget (stdout, `budget_sweep.json`, `budget_sweep.csv`) and
  `budget_curve.png` (accuracy vs budget, as in the Qwen3 report).
- **Mode following** (`mode_check:`): see `rl/mode_following.py`.

Engines (`engine.backend`): `vllm` (default) or `hf`, built directly in this process (no Ray). Everything that can be
checked (config, model path, data rows, rewards and their columns, chat template, prompt lengths) is checked before
the model loads. Outputs in `output_dir`: config.yaml (resolved), results.json, samples.jsonl (pass@k samples with
their rewards), the sweep files (`rl/budget_sweep.py`) and mode_following.{json,jsonl}.

The helpers here (`load_inputs`, `load_tokenizer`, `encode_texts`, `build_engine`, `score_groups`, `pass_at_k`) are
shared with `python -m rl.datatools`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rl.config import RewardConfig
from rl.config_io import ConfigError, build_arg_parser, dump_config, load_config
from rl.data import DataError, load_rows, render_prompts
from rl.eval_config import EngineConfig, EvalConfig, EvalModelConfig, PromptDataConfig, SamplingConfig
from rl.models import check_model_path, resolve_model_path


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k) (Chen et al. 2021),
    computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# ---- inputs, checked before any model loads ---------------------------------------------------------------

@dataclass
class Inputs:
    """Rows and reward specs, validated; the tokenizer with the chat template the run uses."""

    rows: list[dict]
    specs: list[Any] = field(default_factory=list)  # rewards.RewardSpec; specs[0] is the primary reward
    tokenizer: Any = None
    model_path: str = ""


def load_inputs(model: EvalModelConfig, data: PromptDataConfig, rewards: list[RewardConfig]) -> Inputs:
    """Model path, data rows (first `data.max_prompts`), reward functions and the columns they read."""
    from rl.grpo import reward_specs

    check_model_path(model.path)
    rows = load_rows(data.path)[: data.max_prompts]
    specs = reward_specs(rewards, [rows])
    for i, spec in enumerate(specs):
        if spec.label in {s.label for s in specs[:i]}:
            raise ConfigError(f"rewards.{i}: a second reward labelled {spec.label!r}; give it `label: <other name>`")
    return Inputs(rows, specs)


def load_tokenizer(inputs: Inputs, model: EvalModelConfig, data: PromptDataConfig, *, modes: bool = False,
                   budget: bool = False) -> None:
    """Load the tokenizer into `inputs` (thinking-fusion template if `data.thinking_template`). `modes`: the
    template must have Qwen3's modes; `budget`: `</think>` must be one token. ValueError naming the fix."""
    from transformers import AutoTokenizer

    from rl.chat import chat_style, use_thinking_template

    inputs.model_path = resolve_model_path(model.path)
    tokenizer = AutoTokenizer.from_pretrained(inputs.model_path)
    if data.thinking_template:
        use_thinking_template(tokenizer)
    if modes or budget:
        try:
            chat_style(tokenizer)
        except ValueError as e:
            raise ConfigError(f"{e} (set data.thinking_template: true)") from None
    if budget:
        from rl.rollout.budget import thinking_budget_for

        try:
            thinking_budget_for(tokenizer, 1, 1)
        except ValueError as e:
            raise ConfigError(f"budget_sweep: {e} (`python -m rl.think_tokens SRC OUT` does it)") from None
    inputs.tokenizer = tokenizer


def encode_texts(tokenizer: Any, texts: list[str], max_prompt_tokens: int, source: str) -> list[list[int]]:
    """Token ids of rendered prompts; a prompt over `max_prompt_tokens` is a DataError naming its row."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    for i, p in enumerate(ids, start=1):
        if len(p) > max_prompt_tokens:
            raise DataError(f"{source}: row {i} prompt is {len(p)} tokens > data.max_prompt_tokens={max_prompt_tokens}")
    return ids


def check_context(engine: EngineConfig, needed: int) -> int:
    """The engine's context length: `engine.max_model_len`, which must hold `needed` tokens, or `needed`."""
    if engine.max_model_len is None:
        return needed
    if engine.max_model_len < needed:
        raise ConfigError(f"engine.max_model_len={engine.max_model_len} is shorter than the longest prompt + "
                          f"completion of this run ({needed} tokens): raise it or leave it unset")
    return engine.max_model_len


# ---- engine and scoring ------------------------------------------------------------------------------------

def build_engine(model_path: str, model: EvalModelConfig, engine: EngineConfig, max_model_len: int) -> Any:
    """A rollout engine (`rl.rollout.make_engine`) in this process."""
    from rl.rollout import make_engine

    return make_engine(engine.backend, model_path=model_path, dtype=model.dtype, seed=engine.seed,
                       max_model_len=max_model_len, kv_cache_gib=engine.kv_cache_gib,
                       gpu_memory_utilization=engine.gpu_memory_utilization, enforce_eager=engine.enforce_eager)


def sampling_spec(sampling: SamplingConfig, **changes: Any) -> Any:
    from rl.rollout import SamplingSpec

    spec = SamplingSpec(n=sampling.n, max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                        top_p=sampling.top_p, seed=sampling.seed)
    return replace(spec, **changes)


def score_groups(inputs: Inputs, rows: list[dict], texts: list[str], groups: list[list],
                 max_completion_tokens: int) -> dict[str, list[list[float]]]:
    """Every reward's value for every completion, `{label: [prompt][sample]}` (None counts as 0.0), called with
    the GRPO driver's contract (`rl.grpo.score_completions`: dataset columns, completion_ids, rendered_prompt,
    max_completion_tokens), one reward at a time so that each one's own value is known."""
    from types import SimpleNamespace

    from rewards import WeightedRewards
    from rl.grpo import PromptSet, score_completions

    rows_idx = [i for i, group in enumerate(groups) for _ in group]
    flat = [c for group in groups for c in group]
    prompt_set = PromptSet(rows, texts, [], [])
    out = {}
    for spec in inputs.specs:
        one = WeightedRewards([replace(spec, weight=1.0)])
        run = SimpleNamespace(tokenizer=inputs.tokenizer, inputs=SimpleNamespace(rewards=one),
                              max_completion_tokens=max_completion_tokens)
        values, _ = score_completions(run, prompt_set, rows_idx, flat, step=-1)
        it = iter(values)
        out[spec.label] = [[next(it) for _ in group] for group in groups]
    return out


def correct_counts(primary: list[list[float]], threshold: float) -> list[int]:
    return [sum(v >= threshold for v in group) for group in primary]


def pass_metrics(counts: list[int], n: int, ks: list[int]) -> dict[str, float]:
    """`pass@k` averaged over prompts, for every k ≤ n."""
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks if k <= n}


# ---- the CLI -----------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """Everything rendered and tokenized before the model loads."""

    inputs: Inputs
    prompts: dict[str, tuple[list[str], list[list[int]]]]  # "pass_k" / "think" / "no_think" → (texts, ids)
    max_model_len: int


def prepare(cfg: EvalConfig) -> Prepared:
    """Fail fast, naming the key / file / row; load the tokenizer (not the model) and render every prompt."""
    inputs = load_inputs(cfg.model, cfg.data, cfg.rewards)
    sweep = cfg.budget_sweep
    load_tokenizer(inputs, cfg.model, cfg.data, modes=bool(sweep or cfg.mode_check or cfg.data.think_mode != "off"),
                   budget=bool(sweep and max(sweep.budgets) > 0))
    d, tok = cfg.data, inputs.tokenizer
    wanted = ([("pass_k", d.think_mode)] if cfg.pass_k else []) + [(m, m) for m in _sweep_modes(cfg)]
    if cfg.mode_check and not wanted:
        wanted = [("mode_check", "think")]  # only to size the context from the questions' length
    prompts, longest = {}, 0
    for key, mode in wanted:
        texts, _ = render_prompts(inputs.rows, tok, system_prompt=d.system_prompt, think_mode=mode, think_prob=0.0,
                                  seed=0)
        ids = encode_texts(tok, texts, d.max_prompt_tokens, d.path)
        prompts[key] = (texts, ids)
        longest = max(longest, max(map(len, ids)))
    completion = max([cfg.sampling.max_new_tokens if cfg.pass_k else 0, _longest_budgeted(cfg, tok)])
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


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m rl.eval", EvalConfig, __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        cfg = load_config(EvalConfig, args.config, args.overrides)
        prepared = prepare(cfg)
    except (ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        print(f"config ok: {len(prepared.inputs.rows)} prompts, {len(cfg.rewards)} reward(s), model {cfg.model.path}")
        return
    evaluate(cfg, prepared)


def evaluate(cfg: EvalConfig, prepared: Prepared) -> dict[str, Any]:
    """Run every configured part; returns (and writes) results.json's content."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    engine = build_engine(prepared.inputs.model_path, cfg.model, cfg.engine, prepared.max_model_len)
    results: dict[str, Any] = {"model": cfg.model.path, "prompts": len(prepared.inputs.rows)}
    if cfg.pass_k:
        results["pass_k"] = run_pass_k(cfg, prepared, engine, out)
        print("pass@k: " + "  ".join(f"{k} {v:.4f}" for k, v in results["pass_k"].items() if k.startswith("pass@")))
    if cfg.budget_sweep:
        from rl.budget_sweep import run_budget_sweep

        results["budget_sweep"] = run_budget_sweep(cfg, prepared, engine, out)
    if cfg.mode_check:
        from rl.mode_following import run_mode_check

        results["mode_following"] = run_mode_check(cfg, prepared.inputs, engine, prepared.max_model_len, out)
        mf = results["mode_following"]
        print(f"mode following: {mf['score']:.4f} of {mf['turns']} turns "
              f"(think {mf['think_score']}, no_think {mf['no_think_score']})")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")
    return results


def run_pass_k(cfg: EvalConfig, prepared: Prepared, engine: Any, out: Path) -> dict[str, float]:
    """Sample, score, pass@k; writes samples.jsonl (one line per sample: prompt index, text, rewards, correct)."""
    inputs = prepared.inputs
    texts, ids = prepared.prompts["pass_k"]
    groups = engine.generate(ids, sampling_spec(cfg.sampling))
    scores = score_groups(inputs, inputs.rows, texts, groups, cfg.sampling.max_new_tokens)
    primary = scores[inputs.specs[0].label]
    counts = correct_counts(primary, cfg.correct_threshold)
    decoded = [inputs.tokenizer.batch_decode([c.token_ids for c in g], skip_special_tokens=True) for g in groups]
    with (out / "samples.jsonl").open("w") as f:
        for i, group in enumerate(groups):
            for j, c in enumerate(group):
                record = {"prompt_index": i, "sample": j, "completion": decoded[i][j],
                          "rewards": {label: v[i][j] for label, v in scores.items()},
                          "correct": primary[i][j] >= cfg.correct_threshold, "finish_reason": c.finish_reason}
                f.write(json.dumps(record) + "\n")
    flat = [c for g in groups for c in g]
    result = pass_metrics(counts, cfg.sampling.n, cfg.pass_k.k)
    result.update({f"reward/{label}/mean": _mean([v for g in vals for v in g]) for label, vals in scores.items()})
    result["completion_tokens_mean"] = _mean([len(c.token_ids) for c in flat])
    result["truncated_frac"] = _mean([c.finish_reason == "length" for c in flat])
    return result


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
