"""Log-probabilities of chosen tokens and full-vocabulary entropy, from logits at a sampling temperature.

One fused pass over the vocabulary computes both, a chunk of rows at a time in float32, with a hand-written
backward that recomputes each chunk's softmax. Nothing of size [rows, V] in float32 is kept for the backward,
and no [rows, V] float32 copy of the logits is ever made whole: with SmolLM2's 49,152-token vocabulary, the
autograd composition of `log_softmax`/`logsumexp` took 2.1 s forward + backward for 2,048 positions on 2 CPU
cores, this 0.27-0.31 s (benchmarks/RESULTS.md). Each row's log-normaliser is kept from the forward, so the backward
is one exp pass per chunk; the work runs in place on the chunk's float32 copy. Gradients return in the logits' dtype.

With p = softmax(z / τ) at a position and y its token:
    log p_y = z_y / τ − logsumexp(z / τ)          ∂/∂z = (onehot_y − p) / τ
    H = −Σ_v p_v log p_v                          ∂H/∂z = −p ⊙ (log p + H) / τ

Formulas: docs/ALGORITHMS.md#token-log-probabilities-and-entropy.
"""

from __future__ import annotations

import torch

# float32 elements per chunk (8 MB): 42 rows of a 49k vocabulary (16-64 rows measured alike on 2 CPU cores, 85 slower)
_CHUNK_ELEMENTS = 1 << 21


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
    """Forward: (log p_y, H) per row, chunked. Saves the input logits, each row's log-normaliser and H; the
    backward recomputes p from them (no second log-softmax)."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, with_entropy, rows):
        ctx.set_materialize_grads(False)
        flat, idx = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)
        logprob = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(logprob)
        entropy = torch.empty_like(logprob) if with_entropy else None
        with torch.autocast(logits.device.type, enabled=False):  # float32 throughout, whatever the caller's autocast
            for s in range(0, flat.shape[0], rows):
                sl = slice(s, s + rows)
                z = _scaled_float(flat[sl], temperature)
                lse[sl] = torch.logsumexp(z, dim=-1)
                lsm = z.sub_(lse[sl, None])  # log p, in place
                logprob[sl] = lsm.gather(1, idx[sl, None]).squeeze(1)
                if with_entropy:
                    entropy[sl] = -lsm.exp().mul_(lsm).sum(-1)
        ctx.save_for_backward(logits, tokens, lse, entropy)
        ctx.temperature, ctx.rows = temperature, rows
        shape = tokens.shape
        return logprob.view(shape), (entropy.view(shape) if with_entropy else None)

    @staticmethod
    def backward(ctx, grad_logprob, grad_entropy):
        logits, tokens, lse, entropy = ctx.saved_tensors
        if grad_logprob is None and grad_entropy is None:
            return None, None, None, None, None
        flat, idx = logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)
        g_lp = grad_logprob.reshape(-1).float() if grad_logprob is not None else None
        g_h = grad_entropy.reshape(-1).float() if grad_entropy is not None else None
        grad = torch.empty_like(flat)
        with torch.autocast(logits.device.type, enabled=False):
            for s in range(0, flat.shape[0], ctx.rows):
                sl = slice(s, s + ctx.rows)
                lsm = _scaled_float(flat[sl], ctx.temperature).sub_(lse[sl, None])  # log p, in place
                p = lsm.exp()
                # d/dz of g_lp·log p_y + g_h·H = (g_lp·onehot_y − p·(g_lp + g_h·(log p + H))) / τ
                if g_h is not None:
                    lsm.add_(entropy[sl, None]).mul_(g_h[sl, None])
                    if g_lp is not None:
                        lsm.add_(g_lp[sl, None])
                    g = p.mul_(lsm).neg_()
                else:
                    g = p.mul_(-g_lp[sl, None])
                if g_lp is not None:
                    g.scatter_add_(1, idx[sl, None], g_lp[sl, None])
                if ctx.temperature != 1.0:
                    g.div_(ctx.temperature)
                grad[sl] = g
        return grad.view(logits.shape), None, None, None, None


def _scaled_float(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """A [rows, V] chunk as a fresh float32 tensor divided by τ (one pass at τ = 1)."""
    z = z.float() if z.dtype != torch.float32 else z.clone()
    return z if temperature == 1.0 else z.div_(temperature)
