"""Inverse-CDF sampling for vLLM's CPU sampler (installed by `VLLMEngine` on CPU).

vLLM-CPU samples each decode step with a fused Gumbel-max kernel: a hashed uniform and two logs (Gumbel noise) per
vocabulary entry of every row. With `logprobs_mode="processed_logprobs"` (how our engines run: the learner needs
the sampling distribution's log-probabilities) vLLM has already computed log p for the whole [B, V] at that point,
so a draw needs only p = exp(log p), its running sum and one uniform per row: u·Σp located by binary search. On 2
CPU cores, [64, 49152] float32: 8.1 ms (Gumbel kernel) against 2.5 ms, i.e. ~0.18 s of a 32-token rollout of 64
completions (benchmarks/RESULTS.md).

Both draw exactly from softmax(processed logits), after vLLM's temperature and top-k / top-p: a token of zero
probability (filtered out) is never drawn, as the running sum does not rise there. Requests with their own seed
draw their uniform from their own generator, so seeded sampling stays reproducible. vLLM's float64-Gumbel option
keeps vLLM's own path.
"""

from __future__ import annotations

import torch

_original_forward_cpu = None


def sample_from_logprobs(logprobs: torch.Tensor, generators: dict[int, torch.Generator]) -> torch.Tensor:
    """One token per row of logprobs [B, V] (float32 log-probabilities; −inf = excluded) → [B] int64.

    generators: row → generator for rows with their own seed; the other rows use the global generator."""
    cdf = logprobs.exp().cumsum_(dim=-1)  # [B, V], non-decreasing
    total = cdf[:, -1:]
    u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device)
    for row, generator in generators.items():
        u[row] = torch.rand(1, generator=generator, dtype=cdf.dtype, device=cdf.device)
    # u·total < total strictly (rounding could reach it), so the first index whose cdf exceeds it always exists
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(1)


def forward_cpu(self, logits: torch.Tensor, generators: dict[int, torch.Generator], k: torch.Tensor | None,
                p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`TopKTopPSampler.forward_cpu` with inverse-CDF sampling; same contract: (sampled [B], the processed logits
    or log-probabilities the logprobs mode asks for, else None)."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

    if self.use_fp64_gumbel:
        return _original_forward_cpu(self, logits, generators, k, p)
    logits = apply_top_k_top_p(logits, k, p)
    logprobs = logits.log_softmax(dim=-1, dtype=torch.float32)
    returned = {"processed_logits": logits, "processed_logprobs": logprobs}.get(self.logprobs_mode)
    return sample_from_logprobs(logprobs, generators), returned


def install() -> None:
    """Make vLLM's CPU sampler draw by inverse CDF (idempotent). Call before the engine is built: the sampler
    binds `forward_cpu` when it is constructed."""
    global _original_forward_cpu
    from vllm.v1.sample.ops.topk_topp_sampler import TopKTopPSampler

    if TopKTopPSampler.forward_cpu is not forward_cpu:
        _original_forward_cpu = TopKTopPSampler.forward_cpu
        TopKTopPSampler.forward_cpu = forward_cpu
