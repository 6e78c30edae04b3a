"""Token entropy over the full vocabulary, computed in chunks to bound memory."""

from __future__ import annotations

import torch


@torch.no_grad()
def token_entropy(logits: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """H_t = -Σ_v p_v log p_v = logsumexp(z) - Σ_v softmax(z)_v z_v, in float32.

    logits: [..., V] → [...]. Rows are processed `chunk_size` at a time so the float32 copy of the logits
    never exceeds chunk_size × V.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, flat.shape[0], chunk_size):
        z = flat[start : start + chunk_size].float()
        out[start : start + chunk_size] = torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
    return out.view(logits.shape[:-1])


def token_entropy_grad(logits: torch.Tensor) -> torch.Tensor:
    """Differentiable H_t = logsumexp(z) - Σ_v softmax(z)_v z_v in float32, for an entropy bonus in the loss.

    logits: [..., V] → [...]. Not chunked: autograd keeps the float32 softmax of every row for the backward
    anyway. Use `token_entropy` (no grad, chunked) for metrics.
    """
    z = logits.float()
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
