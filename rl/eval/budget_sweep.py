"""Accuracy vs thinking budget (`budget_sweep:` of `python -m rl.eval`), as in the Qwen3 report's budget curves.

For each budget b (tokens): b ≥ 1 renders the prompts in thinking mode and samples them with
`rl.rollout.budget.generate_with_budget` (the thinking stops at `</think>` or at b sampled tokens, where Qwen3's
stop-thinking text is inserted; then at most `max_answer_tokens` of answer); b = 0 renders them in non-thinking
mode (the empty think block pre-filled) and samples `max_answer_tokens` of answer. Each budget is an independent
run with the same `sampling:` settings. One table row per budget:

    budget, mode, pass@1 (and pass@k for every configured k ≤ n), reward/<label> (mean of every reward, None
    counted as 0), thinking_tokens_mean (sampled tokens before `</think>`), budget_hit_frac, closed_frac (thinking closed by
    the model itself), completion_tokens_mean

written to stdout, `budget_sweep.json`, `budget_sweep.csv`, and plotted as `budget_curve.png` (pass@1 vs budget);
every sample (completion text, primary reward, thinking tokens, budget hit) goes to `budget_samples.jsonl`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rl.eval.common import Inputs, grade_groups, mean, sampling_spec
from rl.eval.config import EvalConfig
from rl.eval.pass_k import correct_counts, pass_metrics

COLUMNS = ("budget", "mode", "thinking_tokens_mean", "budget_hit_frac", "closed_frac",
           "completion_tokens_mean")


def run_budget_sweep(cfg: EvalConfig, inputs: Inputs, prompts: dict[str, tuple[list[str], list[list[int]]]],
                     engine: Any, out: Path) -> list[dict[str, Any]]:
    """Every budget of `cfg.budget_sweep`, from the prompts rendered in each mode (`prompts["think"]`,
    `prompts["no_think"]`: texts, ids); writes the table files and the plot; returns the rows."""
    rows = []
    with (out / "budget_samples.jsonl").open("w") as f:
        for budget in cfg.budget_sweep.budgets:
            row, samples = sweep_one(cfg, inputs, prompts, engine, budget)
            rows.append(row)
            f.writelines(json.dumps(s) + "\n" for s in samples)
            print(f"budget {budget}: pass@1 {row['pass@1']:.4f}", flush=True)
    (out / "budget_sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = table_columns(rows)
    with (out / "budget_sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(format_table(rows))
    title = f"{Path(cfg.model.path).name}: {len(inputs.rows)} prompts, n={cfg.sampling.n}, " \
            f"T={cfg.sampling.temperature}"
    plot_budget_curve(rows, out / "budget_curve.png", title)
    return rows


def sweep_one(cfg: EvalConfig, inputs: Inputs, prompts: dict[str, tuple[list[str], list[list[int]]]], engine: Any,
              budget: int) -> tuple[dict[str, Any], list[dict]]:
    """One row of the table (sample every prompt at this budget, score, summarise) and the samples."""
    from rl.rollout.budget import generate_with_budget, sampled_thinking_length, thinking_budget_for

    sweep, sampling = cfg.budget_sweep, cfg.sampling
    if budget == 0:
        texts, ids = prompts["no_think"]
        groups = engine.generate(ids, sampling_spec(sampling, max_new_tokens=sweep.max_answer_tokens))
        thinking = [[0] * len(g) for g in groups]
        max_tokens, hits, closed = sweep.max_answer_tokens, [], []
    else:
        texts, ids = prompts["think"]
        tb = thinking_budget_for(inputs.tokenizer, budget, sweep.max_answer_tokens)
        groups = generate_with_budget(engine, ids, sampling_spec(sampling), tb)
        thinks = [not t.endswith("</think>\n\n") for t in texts]  # a row's own /no_think flag closes the block
        thinking = [[sampled_thinking_length(c, tb.think_end_id) if th else 0 for c in g]
                    for g, th in zip(groups, thinks)]
        flat_think = [c for g, th in zip(groups, thinks) if th for c in g]
        hits = [c.budget_hit for c in flat_think]
        closed = [not c.budget_hit and tb.think_end_id in c.token_ids for c in flat_think]
        max_tokens = tb.max_completion_tokens
    graded = grade_groups(inputs, texts, groups, max_tokens)
    primary = graded.values[inputs.rewards.primary]
    ks = cfg.pass_k.k if cfg.pass_k else [1]
    row = {"budget": budget, "mode": "no_think" if budget == 0 else "think",
           **pass_metrics(correct_counts(primary, cfg.correct_threshold), sampling.n, sorted({1, *ks}))}
    row.update({f"reward/{label}": mean([v for g in values for v in g]) for label, values in graded.values.items()})
    row.update(thinking_tokens_mean=mean([t for g in thinking for t in g]),
               budget_hit_frac=mean(hits) if hits else 0.0, closed_frac=mean(closed) if closed else 0.0,
               completion_tokens_mean=mean([len(c.token_ids) for g in groups for c in g]))
    samples = [{"budget": budget, "prompt_index": i, "sample": j, "completion": graded.texts[i][j],
                "reward": primary[i][j], "correct": primary[i][j] >= cfg.correct_threshold,
                "thinking_tokens": thinking[i][j], "budget_hit": getattr(c, "budget_hit", False)}
               for i, g in enumerate(groups) for j, c in enumerate(g)]
    return row, samples


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    passes = [k for k in rows[0] if k.startswith("pass@")]
    rewards = [k for k in rows[0] if k.startswith("reward/")]
    return [COLUMNS[0], COLUMNS[1], *passes, *rewards, *COLUMNS[2:]]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table, one line per budget (also pasteable into Markdown after the header rule)."""
    columns = table_columns(rows)
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.rjust(w) for v, w in zip(line, widths)) + " |" for line in cells]
    return "\n".join(lines)


def plot_budget_curve(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """pass@1 (and pass@k when measured) vs thinking budget; budget 0 (non-thinking mode) drawn apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key in [k for k in rows[0] if k.startswith("pass@")]:
        think = [(r["budget"], r[key]) for r in rows if r["budget"] > 0]
        line = ax.plot(*zip(*think), marker="o", label=f"{key}, thinking") if think else None
        for r in rows:
            if r["budget"] == 0:
                color = line[0].get_color() if line else None
                ax.scatter([0], [r[key]], marker="s", color=color, zorder=3, label=f"{key}, no thinking")
    for r in rows:
        ax.annotate(f"{r['pass@1']:.2f}", (r["budget"], r["pass@1"]), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.set_xticks([r["budget"] for r in rows])
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, max(0.05, max(r[k] for r in rows for k in r if k.startswith("pass@")) * 1.2))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
