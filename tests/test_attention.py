"""rl.attention: the learner's CPU attention equals SDPA (forward and gradients) and hands large calls to SDPA."""

from __future__ import annotations

import torch

from rl import attention


def _inputs(b=3, h=6, h_kv=2, s=5, s_kv=9, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, s, d, generator=g, requires_grad=True)
    k = torch.randn(b, h_kv, s_kv, d, generator=g, requires_grad=True)
    v = torch.randn(b, h_kv, s_kv, d, generator=g, requires_grad=True)
    # causal over the last s positions of s_kv (a cached prefix before them), some keys padded out per row
    causal = torch.ones(s, s_kv, dtype=torch.bool).tril(diagonal=s_kv - s)
    keep = torch.ones(b, s_kv, dtype=torch.bool)
    keep[1, 2:4] = False
    keep[2, 0] = False
    return q, k, v, (causal[None] & keep[:, None, :])[:, None]


class _Module(torch.nn.Module):
    is_causal = True

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups


def test_matmul_path_equals_sdpa_with_gqa_and_a_boolean_mask() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    outs = []
    for fn in (attention.small_matmul_attention, sdpa_attention_forward):
        q, k, v, mask = _inputs()
        out, _ = fn(_Module(groups=3), q, k, v, mask, scaling=0.3)
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        outs.append((out.detach(), q.grad, k.grad, v.grad))
    assert outs[0][0].shape == (3, 5, 6, 8)  # [B, S, H, D]
    for mine, theirs in zip(*outs):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_large_calls_and_unmasked_calls_go_to_sdpa(monkeypatch) -> None:
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    real = sdpa.sdpa_attention_forward
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    q, k, v, mask = _inputs()
    attention.small_matmul_attention(_Module(3), q, k, v, mask)
    assert calls == []
    attention.small_matmul_attention(_Module(3), q, k, v, None)  # SDPA's is_causal path
    monkeypatch.setattr(attention, "MAX_MATMUL_SCORES", q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] - 1)
    attention.small_matmul_attention(_Module(3), q, k, v, mask)
    assert calls == [1, 1]


def test_learner_models_load_with_it_on_cpu(tiny_model) -> None:
    from rl.config import ModelConfig
    from rl.policy import load_policy, load_reference

    policy = load_policy(str(tiny_model), ModelConfig(path=str(tiny_model)), torch.device("cpu"), None)
    assert policy.model.config._attn_implementation == attention.NAME
    assert load_reference(str(tiny_model), torch.bfloat16, torch.device("cpu")).model.config._attn_implementation \
        == attention.NAME
