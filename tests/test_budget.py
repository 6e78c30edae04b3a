"""Thinking budget at rollout with the real HF and vLLM engines on a tiny Qwen3.

The tiny random model almost never samples `</think>` (≈ 1/500 per token), so the checkpoint used here has
its `</think>` embedding row scaled ×20 (tied, so its logit too): the model then closes its thinking at some
positions and not at others, and one batch shows both outcomes — thinking closed within the budget and
thinking cut at the budget. Everything else is the real engines sampling from that real model.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from rl.chat import render, use_thinking_template
from rl.rollout import Completion, SamplingSpec, make_engine
from rl.rollout.budget import (
    STOP_THINKING_TEXT,
    BudgetedCompletion,
    ThinkingBudget,
    close_thinking,
    generate_with_budget,
    sampled_thinking_length,
    thinking_budget_for,
)

THINK_END_SCALE = 25.0
QUESTIONS = ["What is 2 + 3?", "What is 14 + 7?", "What is 30 + 41?"]
# Sampled logprobs vs. `engine.score` of the finished sequence. HF runs in float32 here (in bf16 the batched,
# cached `generate` and the single `score` forward differ by up to 0.03 nats on this model, as much as
# neighbouring tokens' logprobs differ): measured max 3e-6. vLLM (bf16): measured 0.0.
HF_TOL, VLLM_TOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def think_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a likely `</think>`, and the thinking-fusion chat template on its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = use_thinking_template(AutoTokenizer.from_pretrained(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids("</think>")] *= THINK_END_SCALE
    out = tmp_path_factory.mktemp("think") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(think_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(think_model)


@pytest.fixture(scope="module")
def budget(tokenizer) -> ThinkingBudget:
    return thinking_budget_for(tokenizer, thinking_budget=6, max_answer_tokens=8)


def _prompts(tokenizer) -> tuple[list[list[int]], list[bool]]:
    """Three prompts in thinking mode (the fusion template opens `<think>\\n`) and one in /no_think mode (it
    pre-fills the closed empty block); the flags say which prompts think."""
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    messages.append([{"role": "user", "content": "What is 5 + 5? /no_think"}])
    texts = [render(m, tokenizer) for m in messages]
    assert [t.endswith("<think>\n") for t in texts] == [True, True, True, False]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts], [True, True, True, False]


def _check_completion(c: BudgetedCompletion, thinks: bool, budget: ThinkingBudget, tokenizer) -> str:
    """Every contract of one completion; returns its outcome: 'hit', 'closed', 'ended' or 'answer_only'."""
    n, inserted = len(c.token_ids), list(budget.stop_thinking_ids)
    assert len(c.logprobs) == n and len(c.loss_mask) == n
    if thinks:
        assert sampled_thinking_length(c, budget.think_end_id) <= budget.thinking_budget
    masked = [i for i, m in enumerate(c.loss_mask) if m == 0]
    assert (STOP_THINKING_TEXT in tokenizer.decode(c.token_ids)) == c.budget_hit
    if c.budget_hit:  # exactly `budget` sampled thinking tokens, then the insertion, then the sampled answer
        start = budget.thinking_budget
        assert budget.think_end_id not in c.token_ids[:start]
        assert masked == list(range(start, start + len(inserted)))
        assert c.token_ids[start : start + len(inserted)] == inserted
        assert all(lp == 0.0 for lp in c.logprobs[start : start + len(inserted)])
        assert 1 <= n - start - len(inserted) <= budget.max_answer_tokens
        return "hit"
    assert masked == [] and all(lp <= 0.0 for lp in c.logprobs)
    if not thinks:
        assert 1 <= n <= budget.max_answer_tokens
        return "answer_only"
    if budget.think_end_id in c.token_ids:  # closed within the budget, then the answer
        answer = n - c.token_ids.index(budget.think_end_id) - 1
        assert 1 <= answer <= budget.max_answer_tokens
        return "closed"
    assert c.finish_reason == "stop" and n <= budget.thinking_budget  # EOS inside the thinking: no answer
    return "ended"


def _check_rollout(engine, prompts, thinks, groups, budget, tokenizer, tol: float, n: int) -> list[str]:
    """Contracts of a whole rollout, plus: the sampled logprobs are the policy's own given everything before
    them, inserted tokens included (scoring the full sequence agrees on every mask-1 position)."""
    assert [len(g) for g in groups] == [n] * len(prompts)
    outcomes, off_by_one = [], []
    for prompt, think, group in zip(prompts, thinks, groups):
        for c in group:
            outcomes.append(_check_completion(c, think, budget, tokenizer))
            scored = engine.score(prompt, c.token_ids)
            diffs = [abs(s - lp) for s, lp, m in zip(scored, c.logprobs, c.loss_mask) if m]
            assert max(diffs) < tol
            off_by_one += [abs(s - lp) for s, lp, m in zip(scored[1:], c.logprobs, c.loss_mask) if m]
    assert max(off_by_one) > 10 * tol  # the check has teeth: a one-token misalignment would fail it
    return outcomes


@pytest.fixture(scope="module")
def hf_engine(think_model: Path):
    return make_engine("hf", model_path=str(think_model), dtype="float32")


def test_budget_with_hf_engine(hf_engine, tokenizer, budget) -> None:
    prompts, thinks = _prompts(tokenizer)
    groups = generate_with_budget(hf_engine, prompts, SamplingSpec(n=8, max_new_tokens=1, seed=0), budget)
    outcomes = _check_rollout(hf_engine, prompts, thinks, groups, budget, tokenizer, HF_TOL, n=8)
    assert {"hit", "closed"} <= set(outcomes[:24]) and set(outcomes[24:]) == {"answer_only"}


class _IgnoresStopIds:
    """A real engine that does not stop at the extra stop ids (as if `</think>` were not honoured): phase 1
    then returns tokens after `</think>`, which must be cut and resampled."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, prompts, spec):
        return self.engine.generate(prompts, replace(spec, stop_token_ids=()))


def test_budget_when_the_engine_does_not_stop_at_think_end(hf_engine, tokenizer, budget) -> None:
    prompts, thinks = _prompts(tokenizer)
    groups = generate_with_budget(_IgnoresStopIds(hf_engine), prompts, SamplingSpec(n=8, max_new_tokens=1, seed=1),
                                  budget)
    outcomes = _check_rollout(hf_engine, prompts, thinks, groups, budget, tokenizer, HF_TOL, n=8)
    assert {"hit", "closed"} <= set(outcomes[:24])


@pytest.mark.slow
def test_budget_with_vllm_engine(think_model: Path, tokenizer, budget) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    engine = make_engine("vllm", model_path=str(think_model), kv_cache_gib=0.25, max_model_len=256)
    prompts, thinks = _prompts(tokenizer)
    groups = generate_with_budget(engine, prompts, SamplingSpec(n=8, max_new_tokens=1, seed=0), budget)
    outcomes = _check_rollout(engine, prompts, thinks, groups, budget, tokenizer, VLLM_TOL, n=8)
    assert {"hit", "closed"} <= set(outcomes[:24]) and set(outcomes[24:]) == {"answer_only"}


# ---- the phase-1 decision on hand-made completions (cases the real engines rarely produce) -----------------

def _budget() -> ThinkingBudget:
    return ThinkingBudget(thinking_budget=4, max_answer_tokens=3, think_end_id=9, stop_thinking_ids=(7, 9, 8),
                          closed_prompt_suffix=(9, 1))


def test_close_thinking_cases() -> None:
    b = _budget()
    head, hit, wants = close_thinking(Completion([1, 2, 3, 4], [-1.0, -2.0, -3.0, -4.0], "length"), b)
    assert (head.token_ids, head.logprobs, head.loss_mask, hit, wants) == (
        [1, 2, 3, 4, 7, 9, 8], [-1.0, -2.0, -3.0, -4.0, 0.0, 0.0, 0.0], [1, 1, 1, 1, 0, 0, 0], True, True)
    head, hit, wants = close_thinking(Completion([1, 9, 5, 6], [-1.0, -2.0, -3.0, -4.0], "length"), b)
    assert (head.token_ids, head.logprobs, head.loss_mask, hit, wants) == ([1, 9], [-1.0, -2.0], [1, 1], False, True)
    head, hit, wants = close_thinking(Completion([1, 0], [-1.0, -2.0], "stop"), b)  # EOS inside the thinking
    assert (head.token_ids, head.loss_mask, head.finish_reason, hit, wants) == ([1, 0], [1, 1], "stop", False, False)


class _Scripted:
    """Returns fixed completions per call, records the requests (for the wiring of phases, not the sampling)."""

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def generate(self, prompts, spec):
        self.calls.append((prompts, spec))
        return self.replies.pop(0)


def test_phases_are_wired_as_continuations() -> None:
    b = _budget()
    lp = [-0.5] * 4
    engine = _Scripted([
        [[Completion([1, 2, 3, 4], lp, "length"), Completion([1, 9], lp[:2], "stop"), Completion([0], [-0.1], "stop")]],
        [[Completion([5, 0], [-0.2, -0.3], "stop")], [Completion([6, 6, 6], [-0.4] * 3, "length")]],
    ])
    spec = SamplingSpec(n=3, max_new_tokens=99, stop_token_ids=(0,))
    (group,) = generate_with_budget(engine, [[42]], spec, b)
    (p1_prompts, p1_spec), (p2_prompts, p2_spec) = engine.calls
    assert p1_spec.max_new_tokens == 4 and p1_spec.stop_token_ids == (0, 9) and p1_spec.n == 3
    assert p2_prompts == [[42, 1, 2, 3, 4, 7, 9, 8], [42, 1, 9]] and p2_spec.n == 1 and p2_spec.max_new_tokens == 3
    assert p2_spec.stop_token_ids == (0,)
    assert [c.token_ids for c in group] == [[1, 2, 3, 4, 7, 9, 8, 5, 0], [1, 9, 6, 6, 6], [0]]
    assert [c.loss_mask for c in group] == [[1, 1, 1, 1, 0, 0, 0, 1, 1], [1] * 5, [1]]
    assert [c.budget_hit for c in group] == [True, False, False]
    assert [c.finish_reason for c in group] == ["stop", "length", "stop"]
    assert group[0].logprobs == [-0.5] * 4 + [0.0] * 3 + [-0.2, -0.3]


def test_budget_settings_errors() -> None:
    class SplitsThinkEnd:
        def encode(self, text, add_special_tokens=False):
            return list(text.encode())

    with pytest.raises(ValueError, match="resize_token_embeddings"):
        thinking_budget_for(SplitsThinkEnd(), thinking_budget=4, max_answer_tokens=4)
    with pytest.raises(ValueError, match="thinking_budget=0"):
        replace(_budget(), thinking_budget=0)
