"""Token losses [N, T] → one scalar, exact under any micro-batch split.

Every mode divides by counts of the *global* batch (the whole optimizer step), never by the micro-batch's own,
so Σ over micro-batches of `aggregate(...)` equals the full-batch value, and so do the gradients.
- token-mean (DAPO): Σ_{i,t} l·m / num_tokens.
- seq-mean-token-mean (original GRPO): Σ_i (Σ_t l·m / Σ_t m_i) / num_sequences; a sequence with no real
  token contributes 0.
- seq-mean-token-sum-norm (Dr. GRPO): Σ_{i,t} l·m / (num_sequences · max_len).

Formulas: docs/ALGORITHMS.md#loss-aggregation.
"""

from __future__ import annotations

import torch


def _masked(token_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), token_loss, torch.zeros_like(token_loss))


def token_mean(token_loss: torch.Tensor, mask: torch.Tensor, *, num_tokens: int, num_sequences: int,
               max_len: int) -> torch.Tensor:
    """Σ l·m / num_tokens (a global batch without tokens gives 0)."""
    return _masked(token_loss, mask).sum() / max(num_tokens, 1)


def seq_mean_token_mean(token_loss: torch.Tensor, mask: torch.Tensor, *, num_tokens: int, num_sequences: int,
                        max_len: int) -> torch.Tensor:
    """Σ_i (Σ_t l·m / Σ_t m_i) / num_sequences."""
    per_seq = _masked(token_loss, mask).sum(dim=1) / mask.bool().sum(dim=1).clamp(min=1)
    return per_seq.sum() / num_sequences


def seq_mean_token_sum_norm(token_loss: torch.Tensor, mask: torch.Tensor, *, num_tokens: int,
                            num_sequences: int, max_len: int) -> torch.Tensor:
    """Σ l·m / (num_sequences · max_len): a constant normaliser, so no length bias."""
    return _masked(token_loss, mask).sum() / (num_sequences * max_len)


AGGREGATIONS = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: str, *, num_tokens: int, num_sequences: int,
              max_len: int) -> torch.Tensor:
    """One micro-batch's exact share of the global-batch loss.

    token_loss, mask: [N, T] (the micro-batch). num_tokens: real completion tokens of the global batch;
    num_sequences: sequences of the global batch; max_len: the generation budget (max_new_tokens).
    Returns a scalar tensor (differentiable through token_loss).
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation mode {mode!r} is unknown; choose one of {sorted(AGGREGATIONS)}")
    if num_tokens < 0 or num_sequences < 1 or max_len < 1:
        raise ValueError(f"need num_tokens >= 0, num_sequences >= 1, max_len >= 1; got "
                         f"{num_tokens}, {num_sequences}, {max_len}")
    return AGGREGATIONS[mode](token_loss, mask, num_tokens=num_tokens, num_sequences=num_sequences,
                              max_len=max_len)
