"""Choosing a weight-sync backend from `rollout.weight_sync`, and the checks done before anything starts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from rl.weight_sync.base import WeightSync
from rl.weight_sync.object_store import ObjectStoreSync
from rl.weight_sync.vllm_transfer import TRAINER_INIT_INFO, VLLMTransferSync

if TYPE_CHECKING:
    from rl.config import RolloutConfig


SYNCS: dict[str, Callable[[], WeightSync]] = {
    "object_store": ObjectStoreSync,
    **{name: functools.partial(VLLMTransferSync, name) for name in TRAINER_INIT_INFO},
}
"""`rollout.weight_sync` → its backend (`auto` is resolved by `resolve_weight_sync`)."""


def _cuda_devices() -> int:
    """GPUs this process sees; like `rl.actors`, the driver stands for the node its actors run on."""
    import torch

    return torch.cuda.device_count()


def gpus_needed(cfg: RolloutConfig) -> int:
    """GPUs the weight sync needs: ipc one shared by all, nccl one per engine plus the learner's."""
    return {"ipc": 1, "nccl": cfg.workers + 1}.get(cfg.weight_sync, 0)


def check_weight_sync(cfg: RolloutConfig) -> None:
    """Before anything starts: a GPU backend without the GPUs it needs is a `ValueError` naming the key."""
    need = gpus_needed(cfg)
    if need and (have := _cuda_devices()) < need:
        why = "the learner's and one per rollout engine" if cfg.weight_sync == "nccl" else "shared by all actors"
        raise ValueError(f"rollout.weight_sync={cfg.weight_sync} needs {need} CUDA GPU(s) ({why}) and this machine "
                         f"has {have or 'none'}; use rollout.weight_sync=auto (the object store)"
                         + (" or gloo" if cfg.backend == "vllm" else ""))


def resolve_weight_sync(cfg: RolloutConfig) -> str:
    """`auto` → `object_store` (see `rl.weight_sync`'s docstring); any other value as given."""
    return "object_store" if cfg.weight_sync == "auto" else cfg.weight_sync


def make_weight_sync(cfg: RolloutConfig) -> WeightSync:
    """The backend `rollout.weight_sync` names (checked first); `connect` it once the actors exist."""
    check_weight_sync(cfg)
    return SYNCS[resolve_weight_sync(cfg)]()
