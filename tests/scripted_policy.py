"""A scripted policy for multi-turn tests: a tiny random Qwen3 trained (a few seconds) until it reproduces, greedily,
given completions of given prompts token for token."""

from __future__ import annotations

from pathlib import Path


def scripted_conversation(tokenizer, tool_use, first: str, final: str, env=None) -> tuple[list[int], list[int]]:
    """(completion ids, loss mask) of a two-turn conversation: `first` (which calls tools), the tool turn as the
    real tools answer it (`tool_use`, bound to `tokenizer`), then `final`."""
    from rl.tools import parse_tool_calls

    eos = tokenizer.eos_token
    turn1 = tokenizer.encode(first + eos, add_special_tokens=False)
    calls = parse_tool_calls(first)
    results = tool_use.runner.run([(c, env) for c in calls])
    inserted = tool_use.turns.ids([(c.name or "", r.content) for c, r in zip(calls, results)], model_closed_turn=True)
    turn2 = tokenizer.encode(final + eos, add_special_tokens=False)
    return turn1 + inserted + turn2, [1] * len(turn1) + [0] * len(inserted) + [1] * len(turn2)


def train_to_replay(path: Path, pad_token_id: int, cases: list[tuple[list[int], list[int]]], steps: int = 600) -> None:
    """Fit the model at `path` (saved back in bf16) until each `(prompt ids, completion ids)` case's completion is
    its greedy continuation; AssertionError if it does not get there."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    length = max(len(p) + len(c) for p, c in cases)
    ids = torch.full((len(cases), length), pad_token_id)
    labels, attention = torch.full_like(ids, -100), torch.zeros_like(ids)
    for i, (p, c) in enumerate(cases):  # the loss on the completions only
        ids[i, :len(p) + len(c)], attention[i, :len(p) + len(c)] = torch.tensor(p + c), 1
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 1e-3:
            break
    assert loss.item() < 1e-2, f"the scripted policy did not learn its script (loss {loss.item():.4f})"
    model.to(torch.bfloat16).save_pretrained(path)
