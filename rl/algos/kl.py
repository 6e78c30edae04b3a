"""Per-token KL estimators to a frozen reference (Schulman's k1/k2/k3), x = ref_logprobs - logprobs.

Formulas: docs/ALGORITHMS.md#kl-estimators.
"""

from __future__ import annotations

import torch


def _k1(x: torch.Tensor) -> torch.Tensor:
    return -x


def _k2(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x.square()


def _k3(x: torch.Tensor) -> torch.Tensor:
    # exp(x) - x - 1 ≥ 0 and unbiased for KL(π_θ ‖ π_ref); clamp x so a rare huge gap cannot overflow.
    x = x.clamp(-20.0, 20.0)
    return torch.exp(x) - x - 1.0


KL_ESTIMATORS = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """KL(π_θ ‖ π_ref) estimate per token. logprobs, ref_logprobs: [N, T] → [N, T] (not masked)."""
    return KL_ESTIMATORS[estimator](ref_logprobs - logprobs)
