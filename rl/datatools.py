"""Reasoning-RL data tools (Qwen3's recipe): `python -m rl.datatools {filter,rejection} --config X.yaml [key=value ...]`
(`python -m rl.datatools filter --help` lists every key; `--check` validates and loads no model). Configs:
`FilterConfig` / `RejectionConfig` in `rl/eval_config.py`. A sample is correct ("verified") when the first reward of
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
    mode (`rl.mode_following.follows_mode`, exactly one `<think>...</think>` block, a non-blank answer after
    it); up to
    `max_per_prompt` distinct ones per prompt. Output rows (JSONL), ready for TRL's `SFTTrainer` (conversational
    "messages" format; the extra columns are dropped by its `remove_unused_columns`):

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

from rl.config_io import ConfigError, build_arg_parser, load_config
from rl.data import DataError, render_prompts
from rl.eval import (
    Inputs,
    build_engine,
    check_context,
    correct_counts,
    encode_texts,
    load_inputs,
    load_tokenizer,
    sampling_spec,
    score_groups,
)
from rl.eval_config import FilterConfig, RejectionConfig

COMMANDS = {"filter": FilterConfig, "rejection": RejectionConfig}
_ASSISTANT = "<|im_start|>assistant\n"


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
    args = parser.parse_args(argv[1:])
    try:
        cfg = load_config(model, args.config, args.overrides)
        prepared = prepare_filter(cfg) if command == "filter" else prepare_rejection(cfg)
    except (ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        print(f"config ok: {len(prepared.inputs.rows)} prompts, {len(cfg.rewards)} reward(s), model {cfg.model.path}")
        return
    summary = run_filter(cfg, prepared) if command == "filter" else run_rejection(cfg, prepared)
    print(json.dumps(summary))  # one line, last: scripts can read it


# ---- filter ------------------------------------------------------------------------------------------------

def prepare_filter(cfg: FilterConfig) -> Prepared:
    inputs = load_inputs(cfg.model, cfg.data, cfg.rewards)
    load_tokenizer(inputs, cfg.model, cfg.data, modes=cfg.data.think_mode != "off")
    d = cfg.data
    texts, _ = render_prompts(inputs.rows, inputs.tokenizer, system_prompt=d.system_prompt, think_mode=d.think_mode,
                              think_prob=0.0, seed=0)
    ids = encode_texts(inputs.tokenizer, texts, d.max_prompt_tokens, d.path)
    return Prepared(inputs, texts, ids, check_context(cfg.engine, max(map(len, ids)) + cfg.sampling.max_new_tokens))


def run_filter(cfg: FilterConfig, prepared: Prepared) -> dict[str, Any]:
    inputs = prepared.inputs
    counts = _sample_and_count(cfg, prepared)[0]
    kept, summary = select_learnable(inputs.rows, counts, cfg.sampling.n)
    _write(cfg.output, kept, {"model": cfg.model.path, "data": cfg.data.path, **summary})
    return summary


def select_learnable(rows: list[dict], counts: list[int], n: int) -> tuple[list[dict], dict[str, Any]]:
    """Rows solved c of n times with 0 < c < n, each with `pass_rate` = c / n added; and the summary. Pure."""
    kept = [{**row, "pass_rate": c / n} for row, c in zip(rows, counts) if 0 < c < n]
    histogram = {f"{c}/{n}": sum(x == c for x in counts) for c in range(n + 1)}
    summary = {"prompts": len(rows), "kept": len(kept), "dropped_all_correct": counts.count(n),
               "dropped_all_wrong": counts.count(0), "n": n, "pass_rate_histogram": histogram}
    return kept, summary


def _sample_and_count(cfg: Any, prepared: Prepared) -> tuple[list[int], list[list], dict[str, list[list[float]]]]:
    """Generate `sampling.n` per prompt, score; (correct counts, completion groups, scores by reward label)."""
    inputs = prepared.inputs
    engine = build_engine(inputs.model_path, cfg.model, cfg.engine, prepared.max_model_len)
    groups = engine.generate(prepared.ids, sampling_spec(cfg.sampling))
    scores = score_groups(inputs, inputs.rows, prepared.texts, groups, cfg.sampling.max_new_tokens)
    return correct_counts(scores[inputs.specs[0].label], cfg.correct_threshold), groups, scores


# ---- rejection sampling ------------------------------------------------------------------------------------

def assign_modes(rows: list[dict], system_prompt: str | None, think_fraction: float,
                 seed: int) -> tuple[list[list[dict]], list[str]]:
    """Each row's prompt messages with its mode flag appended to the last user turn, and the mode. Pure."""
    conversations, modes = [], []
    for i, row in enumerate(rows):
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        if system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        mode = "think" if random.Random(seed * 1_000_003 + i).random() < think_fraction else "no_think"
        last_user = max(j for j, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] += f" /{mode}"
        conversations.append(messages)
        modes.append(mode)
    return conversations, modes


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
    ids = encode_texts(inputs.tokenizer, texts, cfg.data.max_prompt_tokens, cfg.data.path)
    max_len = check_context(cfg.engine, max(map(len, ids)) + cfg.sampling.max_new_tokens)
    return Prepared(inputs, texts, ids, max_len, conversations, modes)


def run_rejection(cfg: RejectionConfig, prepared: Prepared) -> dict[str, Any]:
    inputs = prepared.inputs
    _, groups, scores = _sample_and_count(cfg, prepared)
    primary = scores[inputs.specs[0].label]
    responses = []
    for text, group in zip(prepared.texts, groups):
        prefill = text[text.rfind(_ASSISTANT) + len(_ASSISTANT):]
        decoded = inputs.tokenizer.batch_decode([c.token_ids for c in group], skip_special_tokens=True)
        responses.append([(prefill + d, c.finish_reason) for d, c in zip(decoded, group)])
    rows, summary = select_verified(prepared.conversations, prepared.modes, responses, primary, cfg)
    _write(cfg.output, rows, {"model": cfg.model.path, "data": cfg.data.path, **summary})
    return summary


def select_verified(conversations: list[list[dict]], modes: list[str], responses: list[list[tuple[str, str]]],
                    rewards: list[list[float]], cfg: RejectionConfig) -> tuple[list[dict], dict[str, Any]]:
    """SFT rows from the candidates `responses[prompt][sample] = (text, finish_reason)` and their primary
    rewards: verified, finished, well formed, distinct, at most `max_per_prompt` per prompt. Pure."""
    rows, verified, well_formed, empty = [], 0, 0, 0
    for messages, mode, candidates, values in zip(conversations, modes, responses, rewards):
        kept: list[str] = []
        for (text, finish), value in zip(candidates, values):
            if value < cfg.correct_threshold:
                continue
            verified += 1
            if cfg.require_finished and finish == "length":
                continue
            if not _well_formed(text, mode):
                continue
            well_formed += 1
            if text not in kept and len(kept) < cfg.max_per_prompt:
                kept.append(text)
                rows.append({"messages": [*messages, {"role": "assistant", "content": text}], "mode": mode,
                             "reward": value})
        empty += not kept
    summary = {"prompts": len(conversations), "think_prompts": modes.count("think"),
               "no_think_prompts": modes.count("no_think"), "samples": sum(map(len, responses)),
               "verified": verified, "verified_well_formed": well_formed, "rows": len(rows),
               "rows_think": sum(r["mode"] == "think" for r in rows),
               "rows_no_think": sum(r["mode"] == "no_think" for r in rows), "prompts_without_row": empty}
    return rows, summary


def _well_formed(text: str, mode: str) -> bool:
    """Right mode, exactly one think block (a chat template splits reasoning from answer at `</think>`, so a
    second one would eat the answer when the row is rendered for SFT), and a non-blank answer after it."""
    from rl.mode_following import follows_mode

    one_block = text.count("<think>") == 1 and text.count("</think>") == 1
    return one_block and follows_mode(text, mode == "think") and bool(text.partition("</think>")[2].strip())


def _write(output: str, rows: list[dict], summary: dict[str, Any]) -> None:
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    path.with_name(path.stem + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
