"""Mode following (Qwen3 chat modes): how often does the model answer in the mode the latest flag asks for?

`mode_check:` of `python -m rl.eval`. Dialogues of `turns` user turns: turn t of dialogue d asks the question of
data row (d·turns + t) mod rows (its last user message, or the string prompt) with a flag drawn uniformly from
`/think`, `/no_think` and none appended (seeded). The mode the answer must be in is the latest flag so far
(`rl.chat.thinking_enabled`; thinking when there is none). Each assistant turn is generated from
`rl.chat.render(history)` (earlier turns' reasoning dropped, as Qwen3's template does); its *response* is what
follows the last `<|im_start|>assistant\\n` — the template's pre-fill (`response_prefill`; thinking-fusion
template: `<think>\\n` or the empty block; Qwen3's own: nothing) plus the generated text — and it goes into the
history as the assistant turn.

A response obeys (`follows_mode`, pure):
- not thinking: it starts with an empty think block (`<think>`, whitespace, `</think>`) and opens no other one;
- thinking: it starts with `<think>` and the text up to `</think>` (or to the end, when the block is still open at
  `max_new_tokens`) is not blank.

Scores: obeying turns / all turns (`score`), per asked mode (`think_score`, `no_think_score`) and over the turns
whose mode differs from the previous turn's (`switch_score`: does the model follow a change mid-dialogue). Files:
`mode_following.json` (scores) and `mode_following.jsonl` (per dialogue: messages, asked modes, obeyed).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from rl.config_io import ConfigError
from rl.eval.common import Inputs, sampling_spec
from rl.eval.config import EvalConfig

FLAGS = ("/think", "/no_think", None)
_ASSISTANT = "<|im_start|>assistant\n"
_EMPTY_BLOCK = re.compile(r"\s*<think>(\s*)</think>")


def follows_mode(response: str, thinking: bool) -> bool:
    """Whether `response` (pre-fill + generated text) obeys the asked mode (rules in the module docstring)."""
    if not thinking:
        m = _EMPTY_BLOCK.match(response)
        return m is not None and "<think>" not in response[m.end():]
    text = response.lstrip()
    if not text.startswith("<think>"):
        return False
    return bool(text[len("<think>"):].split("</think>", 1)[0].strip())


def response_prefill(rendered: str) -> str:
    """What a rendered prompt already holds of the assistant's response: the text after its last
    `<|im_start|>assistant\\n` (the chat template's pre-fill: `<think>\\n`, the empty think block, or nothing)."""
    return rendered[rendered.rfind(_ASSISTANT) + len(_ASSISTANT):]


def draw_flags(dialogues: int, turns: int, seed: int) -> list[list[str | None]]:
    rng = random.Random(seed)
    return [[rng.choice(FLAGS) for _ in range(turns)] for _ in range(dialogues)]


def summarize(asked: list[list[bool]], obeyed: list[list[bool]]) -> dict[str, Any]:
    """Scores from per-turn asked modes (True = thinking) and outcomes, `[dialogue][turn]`; None where no turn."""
    def frac(pairs: list[tuple[bool, bool]]) -> float | None:
        return sum(ok for _, ok in pairs) / len(pairs) if pairs else None

    turns = [(a, ok) for ad, od in zip(asked, obeyed) for a, ok in zip(ad, od)]
    switches = [(ad[t], od[t]) for ad, od in zip(asked, obeyed) for t in range(1, len(ad)) if ad[t] != ad[t - 1]]
    return {"score": frac(turns), "think_score": frac([p for p in turns if p[0]]),
            "no_think_score": frac([p for p in turns if not p[0]]), "switch_score": frac(switches),
            "turns": len(turns), "think_turns": sum(a for a, _ in turns), "switch_turns": len(switches)}


def run_mode_check(cfg: EvalConfig, inputs: Inputs, engine: Any, max_model_len: int, out: Path) -> dict[str, Any]:
    """Generate the dialogues turn by turn (all dialogues batched per turn), score, write the two files."""
    from rewards.text import prompt_text
    from rl.chat import render, thinking_enabled

    mc, tok = cfg.mode_check, inputs.tokenizer
    flags = draw_flags(mc.dialogues, mc.turns, mc.seed)
    questions = [prompt_text(r["prompt"]) for r in inputs.rows]
    system = [{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []
    dialogues = [list(system) for _ in range(mc.dialogues)]
    asked: list[list[bool]] = [[] for _ in dialogues]
    obeyed: list[list[bool]] = [[] for _ in dialogues]
    spec = sampling_spec(cfg.sampling, n=1, max_new_tokens=mc.max_new_tokens)
    for t in range(mc.turns):
        for d, messages in enumerate(dialogues):
            question = questions[(d * mc.turns + t) % len(questions)]
            flag = flags[d][t]
            messages.append({"role": "user", "content": f"{question} {flag}" if flag else question})
            asked[d].append(thinking_enabled(messages))
        texts = [render(m, tok) for m in dialogues]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        longest = max(map(len, ids))
        if cfg.engine.backend == "vllm" and longest + mc.max_new_tokens > max_model_len:
            raise ConfigError(f"mode_check: turn {t + 1} has a {longest}-token prompt; with max_new_tokens="
                              f"{mc.max_new_tokens} it exceeds engine.max_model_len={max_model_len}: raise it")
        groups = engine.generate(ids, spec)
        generated = tok.batch_decode([g[0].token_ids for g in groups], skip_special_tokens=True)
        for d, (text, gen) in enumerate(zip(texts, generated)):
            response = response_prefill(text) + gen
            dialogues[d].append({"role": "assistant", "content": response})
            obeyed[d].append(follows_mode(response, asked[d][-1]))
    summary = summarize(asked, obeyed)
    (out / "mode_following.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (out / "mode_following.jsonl").open("w") as f:
        for messages, a, o in zip(dialogues, asked, obeyed):
            modes = ["think" if x else "no_think" for x in a]
            f.write(json.dumps({"messages": messages, "asked": modes, "obeyed": o}) + "\n")
    return summary
