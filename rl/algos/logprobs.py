"""Log-probabilities of chosen tokens and full-vocabulary entropy, from logits at a sampling temperature.

One fused pass over the vocabulary computes both, a chunk of rows at a time in float32, with a hand-written
backward that recomputes each chunk's softmax. Nothing of size [rows, V] in float32 is kept for the backward,
and no [rows, V] float32 copy of the logits is ever made whole: with SmolLM2's 49,152-token vocabulary, the
autograd composition of `log_softmax`/`logsumexp` took 2.1 s forward + backward for 2,048 positions on 2 CPU
cores, this 0.5-0.8 s (benchmarks/RESULTS.md). Gradients return in the logits' dtype.

With p = softmax(z / τ) at a position and y its token:
    log p_y = z_y / τ − logsumexp(z / τ)          ∂/∂z = (onehot_y − p) / τ
    H = −Σ_v p_v log p_v                          ∂H/∂z = −p ⊙ (log p + H) / τ
"""

from __future__ import annotations

import torch

# float32 elements per chunk (~16 MB): about 85 rows of a 49k vocabulary (64-128 rows measured fastest on CPU)
_CHUNK_ELEMENTS = 1 << 22


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, *, temperature: float = 1.0,
                   chunk_size: int | None = None) -> torch.Tensor:
    """log softmax(logits / temperature)[token], differentiable, in float32.

    logits: [..., V] (any float dtype); tokens: [...] int64 → [...] float32."""
    return _LogSoftmaxStats.apply(logits, tokens, temperature, False, _rows(logits, chunk_size))[0]


def token_logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, *, temperature: float = 1.0,
                               chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_token, H) per position from one pass, both differentiable; p = softmax(logits / temperature).

    logits: [..., V]; tokens: [...] int64 → two [...] float32 tensors. The entropy's backward runs only if the
    loss uses it."""
    return _LogSoftmaxStats.apply(logits, tokens, temperature, True, _rows(logits, chunk_size))


def token_entropy(logits: torch.Tensor, *, temperature: float = 1.0, chunk_size: int | None = None) -> torch.Tensor:
    """H = −Σ_v p_v log p_v with p = softmax(logits / temperature), differentiable; [..., V] → [...] float32."""
    tokens = torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device)
    return token_logprobs_and_entropy(logits, tokens, temperature=temperature, chunk_size=chunk_size)[1]


def _rows(logits: torch.Tensor, chunk_size: int | None) -> int:
    return chunk_size or max(1, _CHUNK_ELEMENTS // logits.shape[-1])


class _LogSoftmaxStats(torch.autograd.Function):
    """Forward: (log p_y, H) per row, chunked. Saves only the input logits and H; backward recomputes p."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, with_entropy, rows):
        ctx.set_materialize_grads(False)
        flat, idx = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)
        logprob = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
        entropy = torch.empty_like(logprob) if with_entropy else None
        with torch.autocast(logits.device.type, enabled=False):  # float32 throughout, whatever the caller's autocast
            for s in range(0, flat.shape[0], rows):
                lsm = _log_softmax(flat[s : s + rows], temperature)
                logprob[s : s + rows] = lsm.gather(1, idx[s : s + rows, None]).squeeze(1)
                if with_entropy:
                    entropy[s : s + rows] = _entropy(lsm)
        ctx.save_for_backward(logits, tokens, entropy)
        ctx.temperature, ctx.rows = temperature, rows
        shape = tokens.shape
        return logprob.view(shape), (entropy.view(shape) if with_entropy else None)

    @staticmethod
    def backward(ctx, grad_logprob, grad_entropy):
        logits, tokens, entropy = ctx.saved_tensors
        if grad_logprob is None and grad_entropy is None:
            return None, None, None, None, None
        flat, idx = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)
        g_lp = grad_logprob.reshape(-1).float() if grad_logprob is not None else None
        g_h = grad_entropy.reshape(-1).float() if grad_entropy is not None else None
        grad = torch.empty_like(flat)
        with torch.autocast(logits.device.type, enabled=False):
            for s in range(0, flat.shape[0], ctx.rows):
                sl = slice(s, s + ctx.rows)
                lsm = _log_softmax(flat[sl], ctx.temperature)
                p = lsm.exp()
                if g_lp is not None:  # (onehot − p) · g
                    g = p * -g_lp[sl, None]
                    g.scatter_add_(1, idx[sl, None], g_lp[sl, None])
                if g_h is not None:  # −p (log p + H) · g
                    g_ent = p * (lsm + entropy[sl, None]) * -g_h[sl, None]
                    g = g_ent if g_lp is None else g.add_(g_ent)
                if ctx.temperature != 1.0:
                    g /= ctx.temperature
                grad[sl] = g
        return grad.view(logits.shape), None, None, None, None


def _log_softmax(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 log softmax(z / τ) of a [rows, V] chunk (one fused kernel; no division pass at τ = 1)."""
    z = z.float()
    return torch.log_softmax(z if temperature == 1.0 else z / temperature, dim=-1)


def _entropy(lsm: torch.Tensor) -> torch.Tensor:
    """−Σ_v p_v log p_v per row of a [rows, V] float32 log-softmax (a batched dot product: one pass)."""
    return -(lsm.exp().unsqueeze(1) @ lsm.unsqueeze(2)).view(-1)
