"""Thinking budget at rollout (Qwen3): cap the reasoning, then make the model answer. Formula and rules:
docs/ALGORITHMS.md#thinking-budget.

Works over any engine with `generate(prompts, spec)` (`VLLMEngine`, `HFEngine`, the Ray `RolloutGroup`):
- Phase 1 samples each prompt's `spec.n` completions until `</think>` (added as a stop id) or
  `thinking_budget` tokens.
- A completion that reached the budget without `</think>` gets `STOP_THINKING_TEXT` (tokenized once) appended;
  one that closed the block keeps its tokens up to and including the first `</think>` (an engine that did not
  stop there has the rest dropped: a prefix of a sample is still an on-policy sample, the rest is resampled).
- Phase 2 continues every such completion for at most `max_answer_tokens`: one request per completion (n=1)
  whose prompt is the prompt + phase-1 tokens (+ inserted tokens). vLLM's prefix cache makes the shared part
  free; the HF engine recomputes it.
- A completion that ended (EOS) inside its thinking is final: no answer phase.
- A prompt that already ends with a closed think block (`</think>\\n\\n`: `enable_thinking=False`, or the
  fusion template in `/no_think` mode) has nothing to think: it gets `spec.n` answers of `max_answer_tokens`.

Output per completion: all its tokens, the sampler's logprobs aligned with them (0.0 on inserted tokens),
`loss_mask` (0 exactly on the inserted tokens: they were not sampled, so the policy gradient must not push
on them) and `budget_hit`. The budget counts every sampled token before `</think>`, including a `<think>`
the model writes itself.

Sampling note: `spec.max_new_tokens` is replaced by the phase limits; a fixed `spec.seed` gets offset per
phase (and the vLLM engine seeds each prompt of a call apart); train with `seed=None`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from rl.rollout.base import Completion, SamplingSpec

STOP_THINKING_TEXT = (
    "Considering the limited time by the user, I have to give the solution based on the thinking directly now."
    "\n</think>.\n\n"
)


class Generator(Protocol):
    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]: ...


@dataclass(frozen=True)
class ThinkingBudget:
    """Token-level settings of a budgeted rollout; build it with `thinking_budget_for(tokenizer, ...)`."""

    thinking_budget: int  # max sampled tokens before `</think>`
    max_answer_tokens: int  # max sampled tokens after it
    think_end_id: int  # `</think>`, one token
    stop_thinking_ids: tuple[int, ...]  # STOP_THINKING_TEXT, tokenized; contains think_end_id
    closed_prompt_suffix: tuple[int, ...]  # `</think>\n\n`: a prompt ending so has thinking off

    def __post_init__(self) -> None:
        if self.thinking_budget < 1 or self.max_answer_tokens < 1:
            raise ValueError(f"thinking_budget={self.thinking_budget} and max_answer_tokens="
                             f"{self.max_answer_tokens} must both be >= 1")
        if self.think_end_id not in self.stop_thinking_ids:
            raise ValueError("the stop-thinking text must close the block: it has no `</think>` token")

    @property
    def max_completion_tokens(self) -> int:
        """Longest possible completion: budget + inserted text + answer (size `max_model_len` with it)."""
        return self.thinking_budget + len(self.stop_thinking_ids) + self.max_answer_tokens


@dataclass
class BudgetedCompletion(Completion):
    """A `Completion` from `generate_with_budget`: `loss_mask` is always set; `budget_hit` says whether the
    thinking was cut at the budget (then the stop-thinking tokens sit at the mask-0 positions)."""

    budget_hit: bool = False


def thinking_budget_for(
    tokenizer: Any, thinking_budget: int, max_answer_tokens: int, stop_text: str = STOP_THINKING_TEXT
) -> ThinkingBudget:
    """The budget settings for `tokenizer`; ValueError if `</think>` is not a single token."""
    think_end = tokenizer.encode("</think>", add_special_tokens=False)
    if len(think_end) != 1:
        raise ValueError(
            f"a thinking budget needs `</think>` as one token (a stop id), but this tokenizer splits it into "
            f"{len(think_end)}: add it first, tokenizer.add_tokens(['<think>', '</think>']) and "
            "model.resize_token_embeddings(len(tokenizer)), and save both"
        )
    return ThinkingBudget(
        thinking_budget=thinking_budget, max_answer_tokens=max_answer_tokens, think_end_id=think_end[0],
        stop_thinking_ids=tuple(tokenizer.encode(stop_text, add_special_tokens=False)),
        closed_prompt_suffix=tuple(tokenizer.encode("</think>\n\n", add_special_tokens=False)),
    )


def generate_with_budget(
    engine: Generator, prompts: list[list[int]], spec: SamplingSpec, budget: ThinkingBudget
) -> list[list[BudgetedCompletion]]:
    """For each prompt (token ids), `spec.n` completions under the thinking budget (see the module docstring).

    Returns `[len(prompts)][spec.n]` completions in prompt order; for each, `len(token_ids) == len(logprobs) ==
    len(loss_mask)`, and the sampled thinking is at most `budget.thinking_budget` tokens. At most three
    engine calls: phase 1, phase 2 (continuations), and the answers of prompts with thinking off.
    """
    suffix = list(budget.closed_prompt_suffix)
    thinking_off = [len(p) >= len(suffix) and p[len(p) - len(suffix) :] == suffix for p in prompts]
    groups: list[list[BudgetedCompletion]] = [[] for _ in prompts]
    answer_only = [i for i, off in enumerate(thinking_off) if off]
    if answer_only:
        answers = engine.generate([prompts[i] for i in answer_only], _answer_spec(spec, budget, spec.n, 2))
        for i, group in zip(answer_only, answers):
            groups[i] = [_join(Completion([], [], "stop", []), c, budget_hit=False) for c in group]
    think = [i for i, off in enumerate(thinking_off) if not off]
    if think:
        for i, group in zip(think, _think_then_answer(engine, [prompts[i] for i in think], spec, budget)):
            groups[i] = group
    return groups


def _think_then_answer(
    engine: Generator, prompts: list[list[int]], spec: SamplingSpec, budget: ThinkingBudget
) -> list[list[BudgetedCompletion]]:
    """Phase 1 for every prompt, then one batched phase-2 call for every completion that needs an answer."""
    stops = tuple(dict.fromkeys((*spec.stop_token_ids, budget.think_end_id)))
    heads = engine.generate(prompts, replace(spec, max_new_tokens=budget.thinking_budget, stop_token_ids=stops))
    parts = [[close_thinking(c, budget) for c in group] for group in heads]
    pending = [(g, k) for g, group in enumerate(parts) for k, (_, _, wants) in enumerate(group) if wants]
    answers: dict[tuple[int, int], Completion] = {}
    if pending:
        continuations = [prompts[g] + parts[g][k][0].token_ids for g, k in pending]
        outs = engine.generate(continuations, _answer_spec(spec, budget, 1, 1))
        answers = {key: out[0] for key, out in zip(pending, outs)}
    return [
        [_join(head, answers.get((g, k)), budget_hit=hit) for k, (head, hit, _) in enumerate(group)]
        for g, group in enumerate(parts)
    ]


def close_thinking(c: Completion, budget: ThinkingBudget) -> tuple[Completion, bool, bool]:
    """A phase-1 completion → (its thinking part with a loss mask, budget_hit, needs an answer). Pure.

    Closed (`</think>` sampled): cut after the first `</think>`. Budget hit (length, no `</think>`): append the
    stop-thinking tokens, logprob 0.0 and mask 0. Ended (EOS inside the thinking): final as it is."""
    if budget.think_end_id in c.token_ids:
        end = c.token_ids.index(budget.think_end_id) + 1
        return Completion(c.token_ids[:end], c.logprobs[:end], "stop", [1] * end), False, True
    if c.finish_reason == "length":
        assert len(c.token_ids) == budget.thinking_budget, "engine returned 'length' before the budget"
        inserted = list(budget.stop_thinking_ids)
        head = Completion(c.token_ids + inserted, c.logprobs + [0.0] * len(inserted), "length",
                          [1] * len(c.token_ids) + [0] * len(inserted))
        return head, True, True
    return Completion(c.token_ids, c.logprobs, c.finish_reason, [1] * len(c.token_ids)), False, False


def _join(head: Completion, answer: Completion | None, *, budget_hit: bool) -> BudgetedCompletion:
    """Thinking part + sampled answer (all mask 1); the finish reason is the answer's, if there is one."""
    if answer is None:
        return BudgetedCompletion(head.token_ids, head.logprobs, head.finish_reason, head.loss_mask, budget_hit)
    return BudgetedCompletion(
        head.token_ids + answer.token_ids, head.logprobs + answer.logprobs, answer.finish_reason,
        head.loss_mask + [1] * len(answer.token_ids), budget_hit,
    )


def _answer_spec(spec: SamplingSpec, budget: ThinkingBudget, n: int, seed_offset: int) -> SamplingSpec:
    seed = None if spec.seed is None else spec.seed + seed_offset
    return replace(spec, n=n, max_new_tokens=budget.max_answer_tokens, seed=seed)


def sampled_thinking_length(c: Completion, think_end_id: int) -> int:
    """Sampled (mask-1) tokens before the first `</think>`, or all sampled tokens if it has none (thinking
    that never closed); for a completion of a thinking-mode prompt (a `thinking_len` metric)."""
    end = c.token_ids.index(think_end_id) if think_end_id in c.token_ids else len(c.token_ids)
    mask = c.loss_mask if c.loss_mask is not None else [1] * len(c.token_ids)
    return sum(mask[:end])
