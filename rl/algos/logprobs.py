"""Log-probabilities of chosen tokens without materialising a full float32 log-softmax."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """log softmax(logits)[token], differentiable, computed as z[token] - logsumexp(z) in float32.

    logits: [N, T, V]; tokens: [N, T] (int64) → [N, T] float32.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    idx = tokens.reshape(-1)
    pieces = []
    for start in range(0, flat.shape[0], chunk_size):
        z = flat[start : start + chunk_size].float()
        chosen = z.gather(1, idx[start : start + chunk_size, None]).squeeze(1)
        pieces.append(chosen - torch.logsumexp(z, dim=-1))
    return torch.cat(pieces).view(tokens.shape)
