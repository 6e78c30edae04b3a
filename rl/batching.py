"""From a rollout batch to learner micro-batches: the batch type, micro-batch planning and collation.

Two layouts, one contract for the loss (every per-token tensor is [N, T]: N sequences, T = longest completion
of the micro-batch, right-padded, `loss_mask` 1 on real tokens):

- **padded** (`trainer.token_budget` unset): `micro_batch_size` sequences, sorted by length so neighbours pad
  little, each row padded to the longest prompt + completion.
- **packed** (`trainer.token_budget: T`): sequences (longest first) are put into micro-batches of at most T
  tokens, and each micro-batch is one row of concatenated sequences with position ids restarting at 0 and a
  block-diagonal causal mask, so no layer computes on padding. (SDPA on CPU does not infer packing from
  position ids, hence the explicit [1, 1, S, S] mask; the attention is the only part that sees the whole row.)

Either way `flat_positions` [N, T] indexes the trunk's flattened hidden states [B·S, H] at the positions whose
logits predict each completion token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrainBatch:
    """One rollout batch, flattened to B*G sequences (plain lists, cheap to ship through Ray)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    old_logprobs: list[list[float]]  # sampling-time log π_old per completion token
    advantages: list[float]  # one per sequence
    # 0 on completion tokens the policy did not sample (e.g. the text a thinking budget inserts): they stay in
    # the input, so later tokens condition on them, but never enter the loss or the token count. None = all 1.
    loss_masks: list[list[int]] | None = None
    # Per-token advantages; when set they replace `advantages` (e.g. distillation's per-token reverse KL).
    token_advantages: list[list[float]] | None = None
    # Per-token extra inputs for a learner's objective: name → one entry per sequence, each a list with one
    # value per completion token (a number, or a fixed-length list of numbers). Collated to [N, T] / [N, T, K].
    extras: dict[str, list] = field(default_factory=dict)
    # Completions per prompt; groups are contiguous (mini-batches are cut between groups).
    group_size: int = 1

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def mask(self, i: int) -> list[int]:
        return self.loss_masks[i] if self.loss_masks is not None else [1] * len(self.completion_ids[i])

    def token_advantage(self, i: int) -> list[float]:
        if self.token_advantages is not None:
            return self.token_advantages[i]
        return [self.advantages[i]] * len(self.completion_ids[i])

    def seq_len(self, i: int) -> int:
        return len(self.prompt_ids[i]) + len(self.completion_ids[i])

    @property
    def num_completion_tokens(self) -> int:
        """Completion tokens that carry loss (the denominator of the global token-mean)."""
        return sum(sum(self.mask(i)) for i in range(len(self)))

    def select(self, idx: list[int]) -> TrainBatch:
        """The sub-batch of sequences `idx` (a mini-batch)."""
        def pick(values):
            return None if values is None else [values[i] for i in idx]

        return TrainBatch(pick(self.prompt_ids), pick(self.completion_ids), pick(self.old_logprobs),
                          pick(self.advantages), pick(self.loss_masks), pick(self.token_advantages),
                          {k: pick(v) for k, v in self.extras.items()}, self.group_size)


@dataclass(frozen=True)
class LossNorms:
    """Global counts of one optimizer step, so a micro-batch's loss is its exact share of the step's loss."""

    num_tokens: int  # completion tokens with loss mask 1
    num_sequences: int
    max_len: int  # the generation budget (Dr. GRPO's constant normaliser)


def plan_micro_batches(lengths: list[int], *, micro_batch_size: int, token_budget: int | None) -> list[list[int]]:
    """Indices of each micro-batch. lengths: tokens (prompt + completion) per sequence.

    Padded: sorted by length, `micro_batch_size` per micro-batch. Packed: first-fit decreasing into bins of
    ≤ `token_budget` tokens (a sequence longer than the budget gets a micro-batch of its own).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=token_budget is not None)
    if token_budget is None:
        return [order[s : s + micro_batch_size] for s in range(0, len(order), micro_batch_size)]
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(token_budget - lengths[i])
    return bins


def pad_rows(rows: list[list], dtype: torch.dtype) -> torch.Tensor:
    """Right-pad ragged rows of numbers (or of fixed-length lists) with zeros → [N, T] or [N, T, K]."""
    width = max(len(r) for r in rows)
    first = next((v for r in rows for v in r), 0)
    tail = (len(first),) if isinstance(first, (list, tuple)) else ()
    out = torch.zeros((len(rows), width, *tail), dtype=dtype)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=dtype)
    return out


def collate(batch: TrainBatch, idx: list[int], *, packed: bool, device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors of the micro-batch `idx` (see the module docstring for the two layouts)."""
    prompts = [batch.prompt_ids[i] for i in idx]
    completions = [batch.completion_ids[i] for i in idx]
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    if packed:
        input_ids = torch.tensor([t for p, c in zip(prompts, completions) for t in p + c])[None]
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
        seq = torch.repeat_interleave(torch.arange(len(idx)), torch.tensor(lengths))
        causal = torch.ones(len(seq), len(seq), dtype=torch.bool).tril()
        attention_mask = (causal & (seq[:, None] == seq[None, :]))[None, None]
        starts = [sum(lengths[:k]) for k in range(len(idx))]
    else:
        width = max(lengths)
        input_ids = torch.zeros(len(idx), width, dtype=torch.long)
        attention_mask = torch.zeros(len(idx), width, dtype=torch.long)
        for k, (p, c) in enumerate(zip(prompts, completions)):
            input_ids[k, : len(p) + len(c)] = torch.tensor(p + c)
            attention_mask[k, : len(p) + len(c)] = 1
        position_ids = None
        starts = [k * width for k in range(len(idx))]
    # the logits at position t predict token t + 1: completion token j is predicted at start + len(p) - 1 + j
    flat_positions = pad_rows([list(range(s + len(p) - 1, s + len(p) - 1 + len(c)))
                              for s, p, c in zip(starts, prompts, completions)], torch.long)
    tensors = {
        "input_ids": input_ids, "attention_mask": attention_mask, "flat_positions": flat_positions,
        "targets": pad_rows(completions, torch.long),
        "old_logprobs": pad_rows([batch.old_logprobs[i] for i in idx], torch.float32),
        "loss_mask": pad_rows([batch.mask(i) for i in idx], torch.float32),
        "advantages": pad_rows([batch.token_advantage(i) for i in idx], torch.float32),
    }
    if position_ids is not None:
        tensors["position_ids"] = position_ids
    for name, values in batch.extras.items():
        rows = [values[i] for i in idx]
        first = next((v for r in rows for v in r), 0.0)
        is_int = isinstance(first[0] if isinstance(first, (list, tuple)) else first, int)
        tensors[name] = pad_rows(rows, torch.long if is_int else torch.float32)
    return {k: v.to(device) for k, v in tensors.items()}
