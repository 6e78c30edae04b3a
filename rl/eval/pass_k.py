"""pass@k (`pass_k:` of `python -m rl.eval`): `sampling.n` samples per prompt; a sample is correct when the
primary reward is ≥ `correct_threshold`. Per prompt with c correct of n, pass@k = 1 − C(n−c, k) / C(n, k), the
unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"), averaged over
prompts; pass@1 is then the mean fraction correct. Every sample goes to `samples.jsonl` with its rewards."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rl.eval.common import Inputs, grade_groups, mean, sampling_spec
from rl.eval.config import EvalConfig


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
    groups = engine.generate(ids, sampling_spec(cfg.sampling))
    graded = grade_groups(inputs, texts, groups, cfg.sampling.max_new_tokens)
    primary = graded.values[inputs.rewards.primary]
    with (out / "samples.jsonl").open("w") as f:
        for i, group in enumerate(groups):
            for j, c in enumerate(group):
                record = {"prompt_index": i, "sample": j, "completion": graded.texts[i][j],
                          "rewards": {label: v[i][j] for label, v in graded.values.items()},
                          "correct": primary[i][j] >= cfg.correct_threshold, "finish_reason": c.finish_reason}
                f.write(json.dumps(record) + "\n")
    flat = [c for g in groups for c in g]
    result = pass_metrics(correct_counts(primary, cfg.correct_threshold), cfg.sampling.n, cfg.pass_k.k)
    result.update({f"reward/{label}/mean": mean([v for g in vals for v in g]) for label, vals in graded.values.items()})
    result["completion_tokens_mean"] = mean([len(c.token_ids) for c in flat])
    result["truncated_frac"] = mean([c.finish_reason == "length" for c in flat])
    return result
