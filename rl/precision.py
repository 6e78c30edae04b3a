"""bf16 parameters with float32 master weights in the optimizer (`trainer.precision: bf16_params`).

The model's parameters and activations are bf16, as in the rollout engines: no autocast, so no float32↔bf16 copy
of every activation and gradient and no float32 residual stream. AdamW updates float32 copies of the trainable
parameters (a pure-bf16 update of size lr·g would round to zero below a weight's bf16 resolution, ≈ 0.4 %), and
gradients accumulate in float32 on those copies: each bf16 gradient is added to its master's `.grad` the moment
autograd has computed it, then dropped, so micro-batches never sum in bf16. After each optimizer step the
masters are rounded into the bf16 parameters. Checkpoints are written from the masters (float32), so resuming
restores them exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class MasterWeights:
    """float32 masters of `params` (the trainable parameters, still float32 when this is built); afterwards the
    caller casts the model to bf16. Give `self.masters` to the optimizer and call `sync_params` after each step."""

    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = params
        self.masters = [torch.nn.Parameter(p.detach().float().clone()) for p in params]
        for param, master in zip(params, self.masters):
            param.register_post_accumulate_grad_hook(_move_grad_to(master))

    @torch.no_grad()
    def sync_params(self) -> None:
        """Round the updated masters into the (bf16) model parameters."""
        torch._foreach_copy_(self.params, self.masters)

    @contextlib.contextmanager
    def float32_params(self) -> Iterator[None]:
        """Within the block the model's trainable parameters *are* the float32 masters (storage swapped in, not
        copied), e.g. to save a float32 checkpoint; the bf16 storage is put back on exit."""
        saved = [p.data for p in self.params]
        try:
            for param, master in zip(self.params, self.masters):
                param.data = master.data
            yield
        finally:
            for param, data in zip(self.params, saved):
                param.data = data


def _move_grad_to(master: torch.nn.Parameter):
    def hook(param: torch.Tensor) -> None:
        if master.grad is None:
            master.grad = param.grad.float()
        else:
            master.grad.add_(param.grad)
        param.grad = None

    return hook
