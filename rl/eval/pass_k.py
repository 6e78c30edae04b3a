"""pass@k (`pass_k:` of `python -m rl.eval`): `sampling.n` samples per prompt; a sample is correct when the
primary reward is ≥ `correct_threshold`. Per prompt with c correct of n, pass@k = 1 − C(n−c, k) / C(n, k), the
unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"), averaged over
prompts; pass@1 is then the mean fraction correct. Every sample goes to `samples.jsonl` with its rewards."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

from rl.data import render_prompts, tokenize_prompts, with_observation
from rl.eval.common import Inputs, grade_groups, mean, sampling_spec
from rl.eval.config import EvalConfig
from rl.rollout.multiturn import tool_metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k) (Chen et al. 2021),
    computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def correct_counts(primary: list[list[float]], threshold: float) -> list[int]:
    """Correct samples of each prompt, from the primary reward's values `[prompt][sample]`."""
    return [sum(v >= threshold for v in group) for group in primary]


def pass_metrics(counts: list[int], n: int, ks: list[int]) -> dict[str, float]:
    """`pass@k` averaged over prompts, for every k ≤ n."""
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks if k <= n}


def run_pass_k(cfg: EvalConfig, inputs: Inputs, prompts: tuple[list[str], list[list[int]]], engine: Any,
               out: Path) -> dict[str, float]:
    """Sample the rendered `prompts` (texts, ids), score, pass@k; writes samples.jsonl (one line per sample:
    prompt index, text, rewards, correct)."""
    texts, ids = prompts
    tool_use, spec = inputs.tool_use, sampling_spec(cfg.sampling)
    if tool_use:
        render = partial(_render_with_observation, cfg, inputs.tokenizer, tool_use.schemas)
        groups = tool_use.sample(engine.generate, ids, spec, inputs.rows, render)
    else:
        groups = engine.generate(ids, spec)
    max_completion = tool_use.max_completion_tokens(spec.max_new_tokens) if tool_use else spec.max_new_tokens
    graded = grade_groups(inputs, texts, groups, max_completion)
    primary = graded.values[inputs.rewards.primary]
    with (out / "samples.jsonl").open("w") as f:
        for i, group in enumerate(groups):
            for j, c in enumerate(group):
                record = {"prompt_index": i, "sample": j, "completion": graded.texts[i][j],
                          "rewards": {label: v[i][j] for label, v in graded.values.items()},
                          "correct": primary[i][j] >= cfg.correct_threshold, "finish_reason": c.finish_reason}
                if tool_use:
                    record.update(turns=c.turns, tool_calls=c.tool_calls, tool_errors=c.tool_errors)
                f.write(json.dumps(record) + "\n")
    flat = [c for g in groups for c in g]
    result = pass_metrics(correct_counts(primary, cfg.correct_threshold), cfg.sampling.n, cfg.pass_k.k)
    result.update({f"reward/{label}/mean": mean([v for g in vals for v in g]) for label, vals in graded.values.items()})
    result["completion_tokens_mean"] = mean([len(c.token_ids) for c in flat])
    result["truncated_frac"] = mean([c.finish_reason == "length" for c in flat])
    if tool_use:
        result.update(tool_metrics(flat))
    return result


def _render_with_observation(cfg: EvalConfig, tokenizer: Any, schemas: list[dict], row: dict,
                             observation: str) -> list[int]:
    """Token ids of `row`'s prompt with an environment's observation (what `reset` returned) appended to its last
    user message, rendered as the other prompts are."""
    d = cfg.data
    texts, _ = render_prompts([{**row, "prompt": with_observation(row["prompt"], observation)}], tokenizer,
                              system_prompt=d.system_prompt, think_mode=d.think_mode, think_prob=0.0, seed=0,
                              tools=schemas)
    return tokenize_prompts(tokenizer, texts, d.max_prompt_tokens, "reset()")[0]
