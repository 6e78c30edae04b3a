"""Reasoning-RL data tools (Qwen3's recipe): `python -m rl.datatools {filter,rejection} --config X.yaml [key=value ...]`
(`python -m rl.datatools filter --help` lists every key; `--check` validates and loads no model). Configs:
`FilterConfig` / `RejectionConfig` in `rl/eval/config.py`. A sample is correct ("verified") when the first reward of
`rewards:` is ≥ `correct_threshold` (a reward returning None counts as 0).

filter — query filtering: sample N = `sampling.n` completions per prompt with the model to be trained; drop the
    prompts it solves N/N (too easy) or 0/N (not learnable now); write the kept rows, unchanged, plus a `pass_rate`
    column (correct / N) to `output` (JSONL), and `<stem>.summary.json` next to it: prompts, kept,
    dropped_all_correct, dropped_all_wrong, n, pass_rate_histogram (`"c/N": prompts`). Prompts are rendered with
    `data.think_mode`.

rejection — rejection sampling for SFT (off-policy distillation): each prompt is drawn into thinking mode with
    probability `think_fraction` (seeded per row), else non-thinking; its last user message gets the flag
    (`/think` or `/no_think`, Qwen3's convention) and it is rendered with `rl.chat.render` (`/no_think` rows with
    `enable_thinking=False`, the hard switch). `sampling.n` candidates per prompt; a candidate is kept when it is
    verified, finished (not cut at `max_new_tokens`, unless `require_finished: false`) and well formed for its
    mode (`rl.eval.rejection.well_formed`: `rl.eval.mode_following.follows_mode`, exactly one
    `<think>...</think>` block, a non-blank answer after it); up to `max_per_prompt` distinct ones per prompt
    (`rl.eval.rejection.select_sft_rows`, which `distill.offpolicy` uses too). Output rows (JSONL), ready for
    TRL's `SFTTrainer` (conversational "messages" format; the extra columns are dropped by its
    `remove_unused_columns`):

        {"messages": [{"role": "system", ...}?, {"role": "user", "content": "... /think"},
                      {"role": "assistant", "content": "<think>\\nreasoning\\n</think>\\n\\nanswer"}],
         "mode": "think" | "no_think", "reward": <primary reward>}

    A non-thinking response is `<think>\\n\\n</think>\\n\\nanswer` (the empty block, as Qwen3 writes it). The assistant
    content is the response as the model produced it after `<|im_start|>assistant\\n`, the chat template's pre-fill
    included. Summary in `<stem>.summary.json`.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config_io import build_arg_parser, run_cli
from rl.data import DataError, prompt_messages, render_prompts, tokenize_prompts
from rl.eval.common import (
    Graded,
    Inputs,
    build_engine,
    check_context,
    check_summary,
    grade_groups,
    load_inputs,
    load_tokenizer,
    sampling_spec,
)
from rl.eval.config import FilterConfig, RejectionConfig
from rl.eval.mode_following import response_prefill
from rl.eval.pass_k import correct_counts
from rl.eval.rejection import Candidate, KeepRules, select_sft_rows

COMMANDS = {"filter": FilterConfig, "rejection": RejectionConfig}


@dataclass
class Prepared:
    """Checked inputs and rendered prompts (before the model loads)."""

    inputs: Inputs
    texts: list[str]
    ids: list[list[int]]
    max_model_len: int
    conversations: list[list[dict]] | None = None  # rejection: the prompt messages with their flag
    modes: list[str] | None = None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.split("\n\n")[0] + "\n\nusage: python -m rl.datatools {filter,rejection} --config X.yaml "
              "[--check] [key=value ...]", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, model = argv[0], COMMANDS[argv[0]]
    parser = build_arg_parser(f"python -m rl.datatools {command}", model, __doc__.split("\n\n")[0])
    prepare = prepare_filter if command == "filter" else prepare_rejection
    loaded = run_cli(parser, model, argv[1:], prepare, check_summary)
    if not loaded:
        return
    summary = run_filter(*loaded) if command == "filter" else run_rejection(*loaded)
    print(json.dumps(summary))  # one line, last: scripts can read it


# ---- filter ------------------------------------------------------------------------------------------------

def prepare_filter(cfg: FilterConfig) -> Prepared:
    inputs = load_inputs(cfg.model, cfg.data, cfg.rewards)
    load_tokenizer(inputs, cfg.model, cfg.data, modes=cfg.data.think_mode != "off")
    d = cfg.data
    texts, _ = render_prompts(inputs.rows, inputs.tokenizer, system_prompt=d.system_prompt, think_mode=d.think_mode,
                              think_prob=0.0, seed=0)
    ids = tokenize_prompts(inputs.tokenizer, texts, d.max_prompt_tokens, d.path)
    return Prepared(inputs, texts, ids, check_context(cfg.engine, max(map(len, ids)) + cfg.sampling.max_new_tokens))


def run_filter(cfg: FilterConfig, prepared: Prepared) -> dict[str, Any]:
    _, graded = sample_and_grade(cfg, prepared)
    counts = correct_counts(graded.values[prepared.inputs.rewards.primary], cfg.correct_threshold)
    kept, summary = select_learnable(prepared.inputs.rows, counts, cfg.sampling.n)
    _write(cfg.output, kept, {"model": cfg.model.path, "data": cfg.data.path, **summary})
    return summary


def select_learnable(rows: list[dict], counts: list[int], n: int) -> tuple[list[dict], dict[str, Any]]:
    """Rows solved c of n times with 0 < c < n, each with `pass_rate` = c / n added; and the summary. Pure."""
    kept = [{**row, "pass_rate": c / n} for row, c in zip(rows, counts) if 0 < c < n]
    histogram = {f"{c}/{n}": sum(x == c for x in counts) for c in range(n + 1)}
    summary = {"prompts": len(rows), "kept": len(kept), "dropped_all_correct": counts.count(n),
               "dropped_all_wrong": counts.count(0), "n": n, "pass_rate_histogram": histogram}
    return kept, summary


def sample_and_grade(cfg: FilterConfig | RejectionConfig, prepared: Prepared) -> tuple[list[list], Graded]:
    """Generate `sampling.n` per prompt and score them: (completion groups, their rewards and texts)."""
    inputs = prepared.inputs
    engine = build_engine(inputs.model_path, cfg.model, cfg.engine, prepared.max_model_len)
    groups = engine.generate(prepared.ids, sampling_spec(cfg.sampling))
    return groups, grade_groups(inputs, prepared.texts, groups, cfg.sampling.max_new_tokens)


# ---- rejection sampling ------------------------------------------------------------------------------------

def assign_modes(rows: list[dict], system_prompt: str | None, think_fraction: float,
                 seed: int) -> tuple[list[list[dict]], list[str]]:
    """Each row's prompt messages with its mode flag appended to the last user turn, and the mode. Pure."""
    modes = ["think" if random.Random(seed * 1_000_003 + i).random() < think_fraction else "no_think"
             for i in range(len(rows))]
    return [prompt_messages(row["prompt"], system_prompt, mode) for row, mode in zip(rows, modes)], modes


def prepare_rejection(cfg: RejectionConfig) -> Prepared:
    from rl.chat import render

    inputs = load_inputs(cfg.model, cfg.data, cfg.rewards)
    load_tokenizer(inputs, cfg.model, cfg.data, modes=True)
    for i, row in enumerate(inputs.rows, start=1):
        if isinstance(row["prompt"], list) and not any(m["role"] == "user" for m in row["prompt"]):
            raise DataError(f"{cfg.data.path}: row {i} has no user message to put the mode flag on")
    conversations, modes = assign_modes(inputs.rows, cfg.data.system_prompt, cfg.think_fraction, cfg.seed)
    texts = [render(m, inputs.tokenizer, enable_thinking=None if mode == "think" else False)
             for m, mode in zip(conversations, modes)]
    ids = tokenize_prompts(inputs.tokenizer, texts, cfg.data.max_prompt_tokens, cfg.data.path)
    max_len = check_context(cfg.engine, max(map(len, ids)) + cfg.sampling.max_new_tokens)
    return Prepared(inputs, texts, ids, max_len, conversations, modes)


def run_rejection(cfg: RejectionConfig, prepared: Prepared) -> dict[str, Any]:
    groups, graded = sample_and_grade(cfg, prepared)
    primary = graded.values[prepared.inputs.rewards.primary]
    candidates = [[Candidate(response_prefill(rendered) + text, c.finish_reason, value)
                   for c, text, value in zip(group, texts, values)]
                  for rendered, group, texts, values in zip(prepared.texts, groups, graded.texts, primary)]
    rows, summary = select_verified(prepared.conversations, prepared.modes, candidates, cfg)
    _write(cfg.output, rows, {"model": cfg.model.path, "data": cfg.data.path, **summary})
    return summary


def select_verified(conversations: list[list[dict]], modes: list[str], candidates: list[list[Candidate]],
                    cfg: RejectionConfig) -> tuple[list[dict], dict[str, Any]]:
    """SFT rows from the candidates `[prompt][sample]` (reward = the primary reward) by the rejection rules:
    verified, finished, well formed, distinct, at most `max_per_prompt` per prompt; and the summary. Pure."""
    rules = KeepRules(min_reward=cfg.correct_threshold, require_finished=cfg.require_finished, well_formed=True,
                      distinct=True, max_per_prompt=cfg.max_per_prompt, annotate=True)
    kept = select_sft_rows(conversations, modes, candidates, rules)
    summary = {"prompts": len(conversations), "think_prompts": modes.count("think"),
               "no_think_prompts": modes.count("no_think"), "samples": kept.samples, "verified": kept.rewarded,
               "verified_well_formed": kept.accepted, "rows": len(kept.rows),
               "rows_think": kept.rows_per_mode.get("think", 0), "rows_no_think": kept.rows_per_mode.get("no_think", 0),
               "prompts_without_row": kept.prompts_without_row}
    return kept.rows, summary


def _write(output: str, rows: list[dict], summary: dict[str, Any]) -> None:
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    path.with_name(path.stem + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
