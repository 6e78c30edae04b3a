"""Prompt data: load rows from JSONL / Parquet / HF datasets, validate them, iterate with a resumable cursor.

A row is `{"prompt": str | list[{"role", "content"}], ...any other columns}`; the other columns travel with
each completion to the reward functions as keyword arguments.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad data: the message names the source and the row."""


def load_rows(source: str) -> list[dict[str, Any]]:
    """Read every row of `source` (.jsonl, .parquet, a `save_to_disk` directory, or `hf:NAME[:SPLIT]`) and
    validate it. Raises DataError naming the file and the 1-based row number of the first bad row."""
    rows = _read(source)
    if not rows:
        raise DataError(f"{source}: no rows")
    for i, row in enumerate(rows, start=1):
        _check_row(row, source, i)
    return rows


def _read(source: str) -> list[dict[str, Any]]:
    if source.startswith("hf:"):
        import datasets

        name, _, split = source[3:].partition(":")
        return [dict(r) for r in datasets.load_dataset(name, split=split or "train")]
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file {source!r} not found")
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as e:
            raise DataError(f"data directory {source!r} is not a dataset saved with `save_to_disk` ({e})") from None
        if isinstance(loaded, datasets.DatasetDict):
            raise DataError(f"data directory {source!r} holds several splits ({', '.join(loaded)}): point at one, "
                            f"e.g. {source}/{next(iter(loaded))}")
        return [dict(r) for r in loaded]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    raise DataError(f"data file {source!r}: unsupported format (use .jsonl, .parquet, a dataset dir or hf:NAME)")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: row {i} is not UTF-8 (byte {raw[e.start]:#x} at column {e.start + 1})"
                                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: row {i} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {i} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _check_row(row: dict, source: str, i: int) -> None:
    if "prompt" not in row:
        raise DataError(f"{source}: row {i} has no `prompt` column (columns: {', '.join(sorted(row)) or 'none'})")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{source}: row {i} has an empty `prompt`")
        return
    ok = isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    )
    if not ok:
        raise DataError(f"{source}: row {i}: `prompt` must be a string or a list of {{role, content}} messages")


def render_prompt(prompt: str | list[dict], tokenizer: Any, system_prompt: str | None = None,
                  tools: list[dict] | None = None) -> str:
    """Text the model continues: chat messages go through the tokenizer's chat template with the generation
    prompt (and the `tools` schemas, if any: ValueError if the template drops them); a plain string is used as is
    (TRL's "standard" format), unless there are tools: they need the chat template, so the string becomes a user
    turn."""
    if isinstance(prompt, str) and not tools:
        return prompt
    from rl.chat import check_tools_rendered

    return check_tools_rendered(tokenizer.apply_chat_template(prompt_messages(prompt, system_prompt), tools=tools
                                                              or None, tokenize=False, add_generation_prompt=True),
                                tools)


def prompt_messages(prompt: str | list[dict], system_prompt: str | None = None, mode: str = "off") -> list[dict]:
    """A row's prompt as chat messages (copies): a string becomes one user turn; `system_prompt` is prepended when
    there is no system turn; in `think` / `no_think` mode the last user turn gets Qwen3's flag (` /think` or
    ` /no_think`)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    if mode in ("think", "no_think"):
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user] = {**messages[last_user], "content": f"{messages[last_user]['content']} /{mode}"}
    return messages


def with_observation(prompt: str | list[dict], observation: str) -> list[dict]:
    """A row's prompt with an environment's `reset` observation appended to its last user message (as TRL's
    `environment_factory` does), as chat messages (copies)."""
    messages = prompt_messages(prompt)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
    messages[last_user] = {**messages[last_user], "content": messages[last_user]["content"] + observation}
    return messages


def render_prompts(rows: list[dict], tokenizer: Any, *, system_prompt: str | None, think_mode: str,
                   think_prob: float, seed: int, tools: list[dict] | None = None) -> tuple[list[str], list[str]]:
    """Every row's prompt text, and its chat mode (`off`, `think` or `no_think`).

    think_mode `off`: the tokenizer's own template (`render_prompt`). Otherwise Qwen3's modes via `rl.chat.render`:
    `think` lets each row's flags decide (thinking by default), `no_think` pre-fills the empty think block, `mixed`
    draws `think` with probability `think_prob` per row (seeded, so a resumed run renders the same)."""
    if think_mode == "off":
        return [render_prompt(r["prompt"], tokenizer, system_prompt, tools) for r in rows], ["off"] * len(rows)
    from rl.chat import render, thinking_enabled

    texts, modes = [], []
    for i, row in enumerate(rows):
        messages = prompt_messages(row["prompt"], system_prompt)
        mode = think_mode if think_mode != "mixed" else (
            "think" if random.Random(seed * 1_000_003 + i).random() < think_prob else "no_think")
        enable = None if mode == "think" else False
        texts.append(render(messages, tokenizer, enable_thinking=enable, **({"tools": tools} if tools else {})))
        modes.append("think" if thinking_enabled(messages, enable) else "no_think")
    return texts, modes


def tokenize_prompts(tokenizer: Any, texts: list[str], max_prompt_tokens: int, source: str) -> list[list[int]]:
    """Token ids of rendered prompts; a prompt over `max_prompt_tokens` is a DataError naming its row (rows are
    never dropped silently)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    for i, p in enumerate(ids, start=1):
        if len(p) > max_prompt_tokens:
            raise DataError(f"{source}: row {i} prompt is {len(p)} tokens > data.max_prompt_tokens={max_prompt_tokens}")
    return ids


@dataclass
class PromptSet:
    """Rows with their rendered prompt text, token ids and chat mode, computed once at start-up."""

    rows: list[dict]
    texts: list[str]
    ids: list[list[int]]
    modes: list[str]


def encode_prompts(rows: list[dict], tokenizer: Any, data: Any, *, seed: int, source: str,
                   tools: list[dict] | None = None) -> PromptSet:
    """Render (chat template / Qwen3 modes, `render_prompts`, with the `tools` schemas) and tokenize every row's
    prompt, as the training data section `data` (`rl.config.DataConfig`) says; a too-long prompt is a DataError
    naming `source` and row."""
    texts, modes = render_prompts(rows, tokenizer, system_prompt=data.system_prompt, think_mode=data.think_mode,
                                  think_prob=data.think_prob, seed=seed, tools=tools)
    return PromptSet(rows, texts, tokenize_prompts(tokenizer, texts, data.max_prompt_tokens, source), modes)


class PromptStream:
    """Endless, epoch-reshuffled stream of row indices with a checkpointable cursor."""

    def __init__(self, num_rows: int, *, seed: int, shuffle: bool = True):
        self.num_rows, self.seed, self.shuffle = num_rows, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._order_for(0)

    def _order_for(self, epoch: int) -> list[int]:
        order = list(range(self.num_rows))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[int]:
        """The next `k` row indices (crossing into the next epoch when needed)."""
        out = []
        while len(out) < k:
            if self.position == self.num_rows:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._order_for(self.epoch)
            out.append(self._order[self.position])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "num_rows": self.num_rows}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_rows"] != self.num_rows:
            raise DataError(f"checkpoint was taken on {state['num_rows']} rows, the data now has {self.num_rows}")
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._order_for(self.epoch)
