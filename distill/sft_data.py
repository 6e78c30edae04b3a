"""SFT JSONL: one `{"messages": [..., {"role": "assistant", "content": ...}]}` per line (the format of
`rl.datatools`' rejection sampling too), and its conversion to TRL prompt-completion pairs.

Tool use, in TRL's conversational format: a row may carry `"tools": [JSON schemas]` (rendered into the system turn,
as at rollout with `rollout.tools`), assistant turns may carry `tool_calls` (OpenAI format) and `tool` turns the
tools' answers. Only the last assistant turn is trained on, so a cold start for tool use has one row per turn to
teach (e.g. the call, and separately the answer after the tool's response).

A response in Qwen3's thinking mode keeps its think block inside `content` (`<think>\\nreasoning\\n</think>\\n\\n
answer`); a non-thinking one carries the empty block `<think>\\n\\n</think>\\n\\n` (Qwen3's convention). When the
student's chat template has thinking modes (Qwen3's own, or `rl.chat`'s fusion template), a row is rendered
with `rl.chat.render` in the mode its response shows (no reasoning → `enable_thinking=False`), so training text
and inference prompts agree token for token; otherwise with the tokenizer's own chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.chat import EMPTY_THINK_BLOCK, THINK_START, Style


def generation_prefill(mode: str, style: Style | None) -> str:
    """Text a rendered prompt already contains of the assistant's answer: the pre-filled empty think block in
    `no_think` mode, `<think>\\n` for the fusion template in `think` mode, nothing otherwise (`mode` as
    `rl.data.render_prompts` returns it: off | think | no_think)."""
    if mode == "no_think":
        return EMPTY_THINK_BLOCK
    if mode == "think" and style == "fusion":
        return THINK_START + "\n"
    return ""


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class Conversation:
    """One SFT row: its messages (the last one the assistant turn trained on) and the tools' schemas, if any."""

    messages: list[dict]
    tools: list[dict] | None = None


def read_sft_jsonl(path: str | Path) -> list[Conversation]:
    """The conversations of an SFT JSONL file; ValueError naming the file and row of the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"SFT data {str(path)!r} not found")
    conversations = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: row {i} is not valid JSON ({e.msg})") from None
        messages = row.get("messages") if isinstance(row, dict) else None
        ok = isinstance(messages, list) and len(messages) >= 2 and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)
        if not ok or messages[-1]["role"] != "assistant":
            raise ValueError(f"{path}: row {i} needs `messages`: a list of {{role, content}} turns ending with "
                             "an assistant turn")
        tools = row.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(
                isinstance(t, dict) and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str) for t in tools)):
            raise ValueError(f"{path}: row {i}: `tools` must be a list of JSON schemas "
                             '({"type": "function", "function": {"name": ..., "parameters": ...}})')
        conversations.append(Conversation(messages, tools or None))
    if not conversations:
        raise ValueError(f"SFT data {str(path)!r} has no rows")
    return conversations


def prompt_completion(messages: list[dict], tokenizer: Any, style: Style | None,
                      tools: list[dict] | None = None) -> tuple[str, str]:
    """(prompt text, completion text) of one conversation for TRL's prompt-completion SFT.

    The prompt is everything up to the last assistant turn rendered with the generation prompt (including any
    pre-filled think block) and the `tools` schemas; the completion is the rest of the full rendering, ending at
    the EOS token (the template's newline after it is not trained on). ValueError if the prompt is not a prefix of
    the full text, or if the template drops the tools."""
    from rl.chat import check_tools_rendered

    head = messages[:-1]
    if style is None:
        prompt = check_tools_rendered(tokenizer.apply_chat_template(head, tools=tools, tokenize=False,
                                                                    add_generation_prompt=True), tools)
        full = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    else:
        from rl.chat import render, split_reasoning

        reasoning, _ = split_reasoning(messages[-1])
        prompt = render(head, tokenizer, tools=tools, enable_thinking=None if reasoning.strip() else False)
        full = render(messages, tokenizer, tools=tools, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError(f"the chat template renders the prompt differently alone ({prompt[-60:]!r}) and with the "
                         f"response ({full[len(prompt) - 60 : len(prompt)]!r})")
    completion = full[len(prompt):]
    eos = tokenizer.eos_token
    if eos and eos in completion:
        completion = completion[: completion.rindex(eos) + len(eos)]
    return prompt, completion


def tokenize_pair(tokenizer: Any, prompt: str, completion: str) -> dict[str, list[int]]:
    """A pre-tokenized SFT example, TRL's `{input_ids, completion_mask}`: the prompt's ids exactly as a rollout
    engine gets them (the prompt tokenized alone), then the completion's. Tokenizing prompt + completion as one text
    would let BPE merge across the boundary — the no-think prefill's `\\n\\n` becomes two tokens before `<tool_call>`
    or a digit but is one token at the end of an inference prompt — so the model would be trained on a context it
    never sees when sampling (measured: a cold start learnt at loss 1e-4 that never called its tool)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + completion_ids,
            "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids)}
