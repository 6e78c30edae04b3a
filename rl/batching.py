"""From a rollout batch to learner micro-batches: the batch type, micro-batch planning and collation.

Three layouts, one contract for the loss (every per-token tensor is [N, T]: N sequences, T = longest completion
of the micro-batch, right-padded, `loss_mask` 1 on real tokens):

- **shared** (the default: `trainer.token_budget` unset, `trainer.share_prompts` on): a GRPO batch holds each
  prompt n times, so each distinct prompt of a micro-batch goes through the model once (`SharedPrefix.input_ids`
  [G, P]: the prompt minus its last token, right-padded) and its completions run as a second pass over [R, L] rows
  (the prompt's last token + the completion minus its last token) that attend to their prompt's cached keys and
  values (`SharedPrefix.row_prefix` [R] picks each row's prompt). Completions of one prompt that together fit the
  longest one share a row (block-diagonal causal mask, positions restarting after the prompt), so R ≤ N. Exactly
  the same logits and gradients as the padded layout, with N·P − G·P fewer tokens through every layer (2.6× fewer
  on the arithmetic demo's 8 × 8 batches), and less padding.
- **padded**: `micro_batch_size` sequences, sorted by length so neighbours pad little, each row padded to the
  longest prompt + completion.
- **packed** (`trainer.token_budget: T`): sequences (longest first) are put into micro-batches of at most T
  tokens, and each micro-batch is one row of concatenated sequences with position ids restarting at 0 and a
  block-diagonal causal mask, so no layer computes on padding. (SDPA on CPU does not infer packing from
  position ids, hence the explicit [1, 1, S, S] mask; the attention is the only part that sees the whole row.)

`collate` returns a `MicroBatch`: the model's inputs (`ModelInputs`, with a `SharedPrefix` in the shared layout
only) and the loss's per-token tensors. In every layout `ModelInputs.flat_positions` [N, T] indexes the trunk's
flattened hidden states [B·S, H] (for `shared`: of the second pass) at the positions whose logits predict each
completion token. Attention masks are explicit boolean [B, 1, S, S_kv] tensors wherever the layout is not plain
right-padding.
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
    # Set by the learner's pre-update pass under a mismatch correction (`algorithm.mismatch`), never by the driver:
    # the rollout engine's log-probabilities (`old_logprobs` then holds the trainer's) and the per-token TIS / MIS
    # weights. None = no correction.
    sampler_logprobs: list[list[float]] | None = None
    is_weights: list[list[float]] | None = None

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
                          {k: pick(v) for k, v in self.extras.items()}, self.group_size,
                          sampler_logprobs=pick(self.sampler_logprobs), is_weights=pick(self.is_weights))


@dataclass(frozen=True)
class SharedPrefix:
    """The shared layout's first pass: each distinct prompt of the micro-batch once (G prompts, P = the longest
    prompt minus its last token).

    input_ids: [G, P] int64, each prompt minus its last token, right-padded with 0.
    attention_mask: [G, 1, P, P] bool (True = attend), causal within each prefix; a padding query still sees its
        prefix's first token, so no row is empty.
    row_prefix: [R] int64, the prompt (0..G-1) whose keys/values each completion row of the second pass attends to.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    row_prefix: torch.Tensor

    def to(self, device: torch.device) -> SharedPrefix:
        return SharedPrefix(self.input_ids.to(device), self.attention_mask.to(device), self.row_prefix.to(device))


@dataclass(frozen=True)
class ModelInputs:
    """What `rl.policy.Policy.completion_logits` runs: B rows of S tokens through the trunk (in the shared layout,
    after the `prefix` pass), then the output layer at the N × T completion positions.

    input_ids: [B, S] int64 (padded: B = N; packed: B = 1; shared: B = R completion rows).
    attention_mask: padded: [B, S] int64, 1 on real tokens; packed: [1, 1, S, S] bool, block-diagonal causal;
        shared: [R, 1, S, P + S] bool, each row's own prefix then block-diagonal causal over its segments.
    position_ids: [B, S] int64 (packed: [1, S], restarting at 0 per sequence; shared: continuing after each row's
        prompt); None in the padded layout (the model's default 0..S-1).
    flat_positions: [N, T] int64, index into the flattened [B·S] hidden states of the position whose logits predict
        each completion token (0 on padding).
    prefix: the shared layout's prompt pass; None in the padded and packed layouts.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    flat_positions: torch.Tensor
    prefix: SharedPrefix | None = None

    def to(self, device: torch.device) -> ModelInputs:
        return ModelInputs(self.input_ids.to(device), self.attention_mask.to(device),
                           None if self.position_ids is None else self.position_ids.to(device),
                           self.flat_positions.to(device), None if self.prefix is None else self.prefix.to(device))


@dataclass(frozen=True)
class MicroBatch:
    """One collated micro-batch of N sequences; every per-token tensor is [N, T] (T = the longest completion,
    right-padded with 0), aligned with the completion tokens.

    inputs: the model's inputs (`ModelInputs`).
    targets: [N, T] int64, the completion tokens.
    old_logprobs: [N, T] float32, log π_old of each target (the trainer's under a mismatch correction).
    loss_mask: [N, T] float32, 1 on tokens that carry loss.
    advantages: [N, T] float32 (a sequence's advantage repeated, or the batch's per-token advantages).
    sampler_logprobs: [N, T] float32, the rollout engine's log-probabilities when they differ from
        `old_logprobs` (mismatch correction); None = `old_logprobs` are the sampler's.
    is_weights: [N, T] float32, detached TIS / MIS weights of the mismatch correction; None = no correction.
    extras: a learner subclass's per-token inputs (`TrainBatch.extras`), each [N, T] or [N, T, K], int64 when
        given as ints, else float32.
    """

    inputs: ModelInputs
    targets: torch.Tensor
    old_logprobs: torch.Tensor
    loss_mask: torch.Tensor
    advantages: torch.Tensor
    sampler_logprobs: torch.Tensor | None = None
    is_weights: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> MicroBatch:
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        return MicroBatch(self.inputs.to(device), self.targets.to(device), self.old_logprobs.to(device),
                          self.loss_mask.to(device), self.advantages.to(device), move(self.sampler_logprobs),
                          move(self.is_weights), {k: v.to(device) for k, v in self.extras.items()})


@dataclass(frozen=True)
class LossNorms:
    """Global counts of one optimizer step, so a micro-batch's loss is its exact share of the step's loss."""

    num_tokens: int  # completion tokens with loss mask 1
    num_sequences: int
    max_len: int  # the generation budget (Dr. GRPO's constant normaliser)


def plan_micro_batches(lengths: list[int], *, micro_batch_size: int, token_budget: int | None,
                       keep_order: bool = False) -> list[list[int]]:
    """Indices of each micro-batch. lengths: tokens (prompt + completion) per sequence.

    Padded: sorted by length (or in batch order with `keep_order`, which keeps a prompt's group together for the
    shared layout), `micro_batch_size` per micro-batch. Packed: first-fit decreasing into bins of
    ≤ `token_budget` tokens (a sequence longer than the budget gets a micro-batch of its own).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=token_budget is not None)
    if keep_order and token_budget is None:
        order = list(range(len(lengths)))
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


LAYOUTS = ("shared", "padded", "packed")


def collate(batch: TrainBatch, idx: list[int], *, layout: str, device: torch.device) -> MicroBatch:
    """The micro-batch of sequences `idx` in `layout` (one of `LAYOUTS`; see the module docstring), on `device`."""
    prompts = [batch.prompt_ids[i] for i in idx]
    completions = [batch.completion_ids[i] for i in idx]
    if layout == "shared" and min(len(p) for p in prompts) < 2:
        layout = "padded"  # a one-token prompt leaves no prefix to share

    def floats(values: list[list[float]] | None) -> torch.Tensor | None:
        return None if values is None else pad_rows([values[i] for i in idx], torch.float32)

    extras = {}
    for name, values in batch.extras.items():
        rows = [values[i] for i in idx]
        first = next((v for r in rows for v in r), 0.0)
        is_int = isinstance(first[0] if isinstance(first, (list, tuple)) else first, int)
        extras[name] = pad_rows(rows, torch.long if is_int else torch.float32)
    return MicroBatch(
        inputs=_MODEL_INPUTS[layout](prompts, completions),
        targets=pad_rows(completions, torch.long),
        old_logprobs=pad_rows([batch.old_logprobs[i] for i in idx], torch.float32),
        loss_mask=pad_rows([batch.mask(i) for i in idx], torch.float32),
        advantages=pad_rows([batch.token_advantage(i) for i in idx], torch.float32),
        sampler_logprobs=floats(batch.sampler_logprobs),
        is_weights=floats(batch.is_weights),
        extras=extras,
    ).to(device)


def _completion_positions(starts: list[int], prompts: list[list[int]], completions: list[list[int]]) -> torch.Tensor:
    """The logits at position t predict token t + 1: completion token j is predicted at start + len(p) - 1 + j."""
    return pad_rows([list(range(s + len(p) - 1, s + len(p) - 1 + len(c)))
                     for s, p, c in zip(starts, prompts, completions)], torch.long)


def _padded(prompts: list[list[int]], completions: list[list[int]]) -> ModelInputs:
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    width = max(lengths)
    input_ids = torch.zeros(len(prompts), width, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for k, (p, c) in enumerate(zip(prompts, completions)):
        input_ids[k, : len(p) + len(c)] = torch.tensor(p + c)
        attention_mask[k, : len(p) + len(c)] = 1
    return ModelInputs(input_ids, attention_mask, position_ids=None,
                       flat_positions=_completion_positions([k * width for k in range(len(prompts))], prompts,
                                                            completions))


def _packed(prompts: list[list[int]], completions: list[list[int]]) -> ModelInputs:
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    seq = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(lengths))
    causal = torch.ones(len(seq), len(seq), dtype=torch.bool).tril()
    return ModelInputs(
        input_ids=torch.tensor([t for p, c in zip(prompts, completions) for t in p + c])[None],
        attention_mask=(causal & (seq[:, None] == seq[None, :]))[None, None],
        position_ids=torch.cat([torch.arange(n) for n in lengths])[None],
        flat_positions=_completion_positions([sum(lengths[:k]) for k in range(len(prompts))], prompts, completions))


def _shared(prompts: list[list[int]], completions: list[list[int]]) -> ModelInputs:
    distinct: dict[tuple[int, ...], int] = {}
    seq_prefix = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
    prefixes = [list(p[:-1]) for p in distinct]
    prefix_len = torch.tensor([len(p) for p in prefixes])
    width = int(prefix_len.max())
    keys = torch.arange(width)
    # prefix pass: causal over each right-padded prefix; a padding query still sees its prefix's first token,
    # so no row of the mask is empty (an empty row would put NaN into the padding's keys and values)
    prefix_mask = torch.ones(width, width, dtype=torch.bool).tril() & (keys[None, None, :] < prefix_len[:, None, None])
    # second pass: sequence k's segment = [last prompt token] + completion[:-1], so its position j predicts
    # completion token j. Segments of one prompt share rows (`_pack_segments`) as long as the longest segment.
    segments = [[p[-1], *c[:-1]] for p, c in zip(prompts, completions)]  # an empty completion: [p[-1]]
    length = max(len(seg) for seg in segments)
    placement, row_prefix = _pack_segments([len(seg) for seg in segments], seq_prefix, length)
    rows = len(row_prefix)
    input_ids = torch.zeros(rows, length, dtype=torch.long)
    segment = torch.full((rows, length), -1, dtype=torch.long)  # which sequence each position holds (-1: padding)
    local = torch.arange(length).repeat(rows, 1)  # position within its segment (padding: within the row)
    for k, ((row, start), seg) in enumerate(zip(placement, segments)):
        input_ids[row, start : start + len(seg)] = torch.tensor(seg)
        segment[row, start : start + len(seg)] = k
        local[row, start : start + len(seg)] = torch.arange(len(seg))
    row_prefix = torch.tensor(row_prefix)
    own_prefix = (keys[None, :] < prefix_len[row_prefix][:, None])[:, None, :].expand(-1, length, -1)
    causal = torch.ones(length, length, dtype=torch.bool).tril() & (segment[:, :, None] == segment[:, None, :])
    return ModelInputs(
        input_ids=input_ids,
        attention_mask=torch.cat([own_prefix, causal], dim=2)[:, None],
        position_ids=prefix_len[row_prefix][:, None] + local,
        flat_positions=pad_rows([[row * length + start + j for j in range(len(c))]
                                 for (row, start), c in zip(placement, completions)], torch.long),
        prefix=SharedPrefix(pad_rows(prefixes, torch.long), prefix_mask[:, None], row_prefix),
    )


def _pack_segments(lengths: list[int], prefix_of: list[int], capacity: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Each prompt's segments packed first-fit decreasing (`plan_micro_batches`) into rows of `capacity` tokens (a
    row holds one prompt's segments only: it attends to that prompt's keys/values). Returns each segment's
    (row, start) and each row's prompt. In a GRPO group, completions that stopped early share rows, so fewer padding
    tokens go through every layer."""
    placement: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    row_prefix: list[int] = []
    for prefix in dict.fromkeys(prefix_of):
        members = [k for k, owner in enumerate(prefix_of) if owner == prefix]
        for row in plan_micro_batches([lengths[k] for k in members], micro_batch_size=1, token_budget=capacity):
            start = 0
            for i in row:
                placement[members[i]] = (len(row_prefix), start)
                start += lengths[members[i]]
            row_prefix.append(prefix)
    return placement, row_prefix


_MODEL_INPUTS = {"shared": _shared, "padded": _padded, "packed": _packed}
