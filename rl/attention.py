"""The learner's attention on CPU: plain batched matmuls for small micro-batches, SDPA for the rest.

PyTorch's CPU flash-attention kernel (what SDPA runs on CPU) has a slow backward at GRPO's usual CPU shapes (a
few dozen rows of ~100 tokens): ~22 ms per layer for a 64 × 33 × 92 call whose arithmetic is ~0.1 GFLOP, a
fifth of the whole learner step on SmolLM2-135M. Two matmuls and a float32 softmax, as transformers' eager
attention does them (here in float32), are exact and several times faster there, but keep the [B, H, S, S_kv]
probabilities for the backward, so they are used only while those stay small (`MAX_MATMUL_SCORES` per call); anything
larger, any call without an explicit mask (SDPA's is_causal path) and every GPU go to SDPA unchanged.

Registered with transformers as the attention implementation `rl_cpu` (masks are built as for SDPA, so 4-D
boolean masks, True = attend, reach it as they reach SDPA).
"""

from __future__ import annotations

import torch

NAME = "rl_cpu"
MAX_MATMUL_SCORES = 1 << 22  # B·H·S·S_kv per call (float32 scores and probabilities: ≈ 32 MiB per layer)


def small_matmul_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                           **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: query [B, H, S, D], key/value [B, H_kv, S_kv, D],
    attention_mask [B or 1, 1, S, S_kv] (bool: True = attend; or additive float) or None. Returns the output
    [B, S, H, D] and no weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, h, s, d = query.shape
    s_kv = key.shape[2]
    if query.device.type != "cpu" or attention_mask is None or dropout > 0 or b * h * s * s_kv > MAX_MATMUL_SCORES:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    h_kv = key.shape[1]
    groups = h // h_kv
    # Grouped-query attention without copying keys/values per query head: query head j uses key/value head
    # j // groups, so the `groups` query heads of a key/value head stack along the rows, [B, H_kv, groups·S, D],
    # and attend to that head's keys in one matmul (the mask broadcasts over the groups dimension).
    # float32 throughout (as SDPA's kernels accumulate): bf16 scores would be off by ~0.03 at magnitudes ~10.
    # The arithmetic here is a small share of the layer's, so float32 matmuls cost little.
    with torch.autocast(device_type="cpu", enabled=False):
        q = query.float().reshape(b, h_kv, groups * s, d)
        scores = torch.matmul(q, key.float().transpose(2, 3)) * (d ** -0.5 if scaling is None else scaling)
        scores = scores.view(b, h_kv, groups, s, s_kv)
        mask = attention_mask.unsqueeze(2)  # [B or 1, 1, 1, S, S_kv]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1).view(b, h_kv, groups * s, s_kv)
        out = torch.matmul(probs, value.float()).view(b, h, s, d)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register `rl_cpu` with transformers (idempotent); returns its name for `attn_implementation=`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, small_matmul_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


def implementation(device: torch.device) -> str | None:
    """The `attn_implementation` for a learner-side model on `device` (None: transformers' default)."""
    return register() if device.type == "cpu" else None
