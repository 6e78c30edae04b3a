"""`rollout.weight_sync=ipc|nccl|gloo`: vLLM's weight-transfer API, and the learner's side of it.

`VLLMTransferSync` is what the driver holds; the transfer itself runs in the learner actor (`WeightSender`, mixed
into its class by `rl.actors.start_learner`), which reads `LearnerWeights` and drives every engine's receiving
side through `RolloutClient`. vLLM is imported only inside the learner's process, when the transfer opens.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import ray

from rl.weight_sync.base import WeightSync

if TYPE_CHECKING:
    import torch


class VLLMTransferSync(WeightSync):
    """Through vLLM's weight-transfer backend `transfer`: the learner sends (`WeightSender.send_weights`) and
    drives every engine's receiving side through `RolloutClient`."""

    def __init__(self, transfer: str):
        self.transfer = transfer
        self.engine_kwargs = {"weight_transfer": transfer}

    def connect(self, learner: Any, workers: list) -> None:
        self.learner, self.workers = learner, workers
        learner.call("open_weight_transfer", self.transfer, workers)

    def push(self, timeout_s: float | None = None) -> None:
        """(The learner drives the engines' side itself: `timeout_s` does not apply.)"""
        self.learner.call("send_weights")


# ---- the learner's side of vLLM's weight transfer ---------------------------------------------------------------


def _node_ip() -> str:
    return ray.util.get_node_ip_address()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _nccl_init_info(world_size: int) -> Any:
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

    return NCCLTrainerInitInfo(master_address=_node_ip(), master_port=_free_port(), world_size=world_size, rank=0)


def _ipc_init_info(world_size: int) -> Any:
    from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

    # unpacked: the whole round is one `update_weights` call, which `RolloutClient` needs
    return IPCTrainerInitInfo(rank=0, packed=False)


def _gloo_init_info(world_size: int) -> Any:
    # importing the module registers the gloo backend with vLLM's factories
    from rl.weight_sync.gloo import GlooTrainerInitInfo

    return GlooTrainerInitInfo(master_address=_node_ip(), master_port=_free_port(), world_size=world_size, rank=0)


TRAINER_INIT_INFO: dict[str, Callable[[int], Any]] = {"ipc": _ipc_init_info, "nccl": _nccl_init_info,
                                                      "gloo": _gloo_init_info}
"""vLLM weight-transfer backend → its trainer-side init info, given the group size (learner + engines)."""


class LearnerWeights:
    """The learner's weights as vLLM's `WeightSource` (duck-typed, so this module imports without vLLM): HF names,
    LoRA merged, in the compute dtype, on the learner's device (nccl and ipc read them straight from its GPU).
    Sharded, iterating gathers one unit at a time, with the other ranks gathering alongside (`send_weights`); the
    metadata comes from the shapes, gathering nothing."""

    def __init__(self, learner: Any):
        self.learner = learner
        self._metadata: list | None = None

    def metadata(self) -> list:
        """(name, dtype, shape) of what iteration yields: one pass, once (they never change)."""
        from vllm.distributed.weight_transfer.base import ParamMeta

        if self._metadata is None:
            self._metadata = [ParamMeta(name, dtype, shape) for name, dtype, shape in self.learner.weight_shapes()]
        return self._metadata

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return self.learner.full_weights()


class RolloutClient:
    """vLLM's `VLLMWeightSyncClient` (a structural protocol) over our rollout workers. It differs from vLLM's
    `RayVLLMWeightSyncClient` where our engines differ from one data-parallel deployment:

    - the engines are independent `LLM`s, so each gets its own rank in the transfer group (rank offsets 1, 2, ...;
      vLLM sends every handle the same offset and lets each add its data-parallel index, which is 0 for all);
    - the engines also serve the driver's `generate` calls (prefetching with `rollout.max_staleness: 1`), so
      start → update → finish run as one actor call per engine (`RolloutWorker.receive_weights`): no generate can
      slip in while an engine's layers are torn down for the layerwise reload. This needs the whole round in one
      `update_weights` call, as nccl, gloo and unpacked ipc do.
    """

    def __init__(self, workers: list):
        self.workers = workers

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        def for_engine(i: int) -> dict[str, Any]:
            if "rank_offset" not in init_info:  # ipc: no group
                return init_info
            return {**init_info, "rank_offset": init_info["rank_offset"] + i}

        ray.get([w.init_weight_transfer.remote(for_engine(i)) for i, w in enumerate(self.workers)])

    def start_weight_update(self) -> None:
        """Part of `update_weights` (see the class docstring)."""

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        assert isinstance(update_info, dict), "one update_weights call per round (see RolloutClient)"
        ray.get([w.receive_weights.remote(update_info) for w in self.workers])

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        """Part of `update_weights` (see the class docstring)."""


class WeightSender:
    """Mixed into the learner's actor class by `rl.actors.start_learner`: vLLM's trainer-side engine lives in the
    learner's process, next to the weights. Reads `full_weights()`, `weight_shapes()` and `world` of the
    `rl.learner.Learner` it is mixed into."""

    def open_weight_transfer(self, transfer: str, workers: list) -> None:
        """Rendezvous with every rollout engine over vLLM's backend `transfer` (blocks until all have joined).
        Only learner rank 0 sends."""
        if self.world.rank != 0:
            return
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        if getattr(self, "_weight_transfer", None) is not None:  # reopened after an engine was replaced
            self._weight_transfer.shutdown()

        init_info = TRAINER_INIT_INFO[transfer](1 + len(workers))
        self._weight_transfer = WeightTransferTrainerFactory.trainer_init(
            init_info, client=RolloutClient(workers), source=LearnerWeights(self))

    def send_weights(self) -> None:
        """The current weights to every engine; returns when all of them have loaded them. Ranks other than 0
        gather alongside rank 0, unit by unit, and send nothing."""
        if self.world.rank != 0:
            for _ in self.full_weights():
                pass
            return
        self._weight_transfer.send_weights()
