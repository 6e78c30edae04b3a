"""Rollout/trainer mismatch correction: vLLM's sampling logprobs differ from the trainer's even at equal weights.

With x_t = trainer_logprobs - sampler_logprobs (log of the ratio π_trainer / π_sampler on the sampled token):
- tis (truncated importance sampling): w_t = min(exp(x_t), c).
- mis_token (masked importance sampling): w_t = 1 if exp(x_t) ∈ [1/c, c] else 0.
- mis_seq: w_t = 1 for every token of sequence i if exp(mean_t x_t) (geometric-mean ratio) ∈ [1/c, c], else 0.
Weights are detached and multiply the token loss; masked positions get 0.

Formulas: docs/ALGORITHMS.md#rollout-trainer-mismatch.
"""

from __future__ import annotations

import math

import torch

from rl.algos.kl import KL_ESTIMATORS


def _log_ratio(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    x = (trainer_logprobs - sampler_logprobs).detach()
    return torch.where(valid, x, torch.zeros_like(x))  # padding may hold ±inf/nan garbage


def tis_weights(x: torch.Tensor, valid: torch.Tensor, c: float) -> torch.Tensor:
    """min(exp(x), c) per token. x, valid: [N, T]."""
    return torch.where(valid, torch.exp(x).clamp(max=c), torch.zeros_like(x))


def mis_token_weights(x: torch.Tensor, valid: torch.Tensor, c: float) -> torch.Tensor:
    """1 where exp(x) ∈ [1/c, c] (compared as |x| ≤ log c), else 0."""
    return (valid & (x.abs() <= math.log(c))).float()


def mis_seq_weights(x: torch.Tensor, valid: torch.Tensor, c: float) -> torch.Tensor:
    """1 on every real token of a sequence whose geometric-mean ratio exp(mean_t x) ∈ [1/c, c], else 0."""
    seq_x = x.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    keep = seq_x.abs() <= math.log(c)
    return (valid & keep.unsqueeze(1)).float()


CORRECTIONS = {"tis": tis_weights, "mis_token": mis_token_weights, "mis_seq": mis_seq_weights}


def mismatch_weights(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor,
                     mode: str, c: float) -> torch.Tensor:
    """Detached per-token weights [N, T] for the token loss.

    trainer_logprobs: the trainer's logπ_old of the sampled tokens; sampler_logprobs: the rollout engine's;
    mask: [N, T] real completion tokens. mode: a key of `CORRECTIONS`; c ≥ 1 (typically 2).
    """
    if mode not in CORRECTIONS:
        raise ValueError(f"mismatch correction {mode!r} is unknown; choose one of {sorted(CORRECTIONS)}")
    if c < 1.0:
        raise ValueError(f"mismatch correction threshold c must be >= 1, got {c}")
    valid = mask.bool()
    return CORRECTIONS[mode](_log_ratio(trainer_logprobs, sampler_logprobs, valid), valid, c)


@torch.no_grad()
def mismatch_kl(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of k3 = exp(x) - x - 1, x = trainer - sampler: an estimate of KL(π_sampler ‖ π_trainer).

    The tokens were drawn from the sampler, so E_sampler[exp(x) - x - 1] = 1 + KL(sampler ‖ trainer) - 1.
    [N, T] → detached scalar (mean over this call's real tokens; 0 when there are none). A metric, not a loss.
    """
    valid = mask.bool()
    k3 = KL_ESTIMATORS["k3"](_log_ratio(trainer_logprobs, sampler_logprobs, valid))
    return torch.where(valid, k3, torch.zeros_like(k3)).sum() / valid.sum().clamp(min=1)
