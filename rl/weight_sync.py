"""How the learner's new weights reach every rollout engine after an optimizer step (`rollout.weight_sync`).

The driver calls `push()` once per step whatever the backend (`SYNCS`); it returns once every engine serves the
new weights with its prefix cache dropped, so `time_sync_s` is the whole transfer.

- `object_store`: `Learner.weights()` (HF names, LoRA merged, compute dtype, on CPU) goes into Ray's object store
  once; every worker reads it from there (zero-copy on its node) into its engine's `load_weights`. Any engine.
- `ipc`, `nccl`, `gloo`: vLLM's weight-transfer API. The learner actor holds vLLM's trainer-side engine
  (`WeightTransferTrainerFactory.trainer_init`, mixed in by `WeightSender`) reading `LearnerWeights`; each rollout
  engine holds the receiving side (`LLM(weight_transfer_config=...)`) and the rollout workers are the trainer's
  control-plane client (`RolloutClient`). `ipc` hands CUDA IPC handles to engines on the learner's GPU (where
  `rl.actors` puts everything on one node); `nccl` broadcasts from the learner's GPU to engines on GPUs of
  their own (NCCL cannot run two ranks on one GPU); `gloo` is that broadcast over a CPU process group
  (`rl.rollout.vllm_engine.GlooWeightTransferEngine`), the same protocol where there is no GPU.
- `auto`: `object_store`, the path every CPU test and the demo run end to end. `ipc` / `nccl` are opt-in until
  their `gpu` test (tests/test_weight_sync.py) has passed on a GPU with vllm; `auto` should pick `ipc` there then.
"""

from __future__ import annotations

import functools
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    import torch

    from rl.config import RolloutConfig


class WeightSync(ABC):
    """One way for weights to travel from the learner actor to the rollout workers."""

    engine_kwargs: dict[str, Any]
    """What each rollout engine needs at construction to receive this way (merged into its kwargs)."""

    @abstractmethod
    def connect(self, learner: Any, workers: list) -> None:
        """Once, after the actors exist: open the channel (a collective one blocks until every side joined)."""

    @abstractmethod
    def push(self) -> None:
        """The learner's current weights into every engine; returns once all of them serve the new weights."""


class ObjectStoreSync(WeightSync):
    """Through Ray's object store: one `weights()` result, pulled by every worker into `engine.load_weights`."""

    def __init__(self):
        self.engine_kwargs = {}

    def connect(self, learner: Any, workers: list) -> None:
        self.learner, self.workers = learner, workers

    def push(self) -> None:
        weights = self.learner.weights.remote()
        ray.get([w.load_weights.remote(weights) for w in self.workers])


class VLLMTransferSync(WeightSync):
    """Through vLLM's weight-transfer backend `transfer`: the learner sends (`WeightSender.send_weights`) and
    drives every engine's receiving side through `RolloutClient`."""

    def __init__(self, transfer: str):
        self.transfer = transfer
        self.engine_kwargs = {"weight_transfer": transfer}

    def connect(self, learner: Any, workers: list) -> None:
        self.learner = learner
        ray.get(learner.open_weight_transfer.remote(self.transfer, workers))

    def push(self) -> None:
        ray.get(self.learner.send_weights.remote())


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
    from rl.rollout.vllm_engine import GlooTrainerInitInfo

    return GlooTrainerInitInfo(master_address=_node_ip(), master_port=_free_port(), world_size=world_size, rank=0)


TRAINER_INIT_INFO: dict[str, Callable[[int], Any]] = {"ipc": _ipc_init_info, "nccl": _nccl_init_info,
                                                      "gloo": _gloo_init_info}
"""vLLM weight-transfer backend → its trainer-side init info, given the group size (learner + engines)."""


class LearnerWeights:
    """The learner's weights as vLLM's `WeightSource` (duck-typed, so this module imports without vLLM): HF names,
    LoRA merged, in the compute dtype, on the learner's device (nccl and ipc read them straight from its GPU)."""

    def __init__(self, learner: Any):
        self.learner = learner
        self._metadata: list | None = None

    def metadata(self) -> list:
        """(name, dtype, shape) of what iteration yields: one pass, once (they never change)."""
        from vllm.distributed.weight_transfer.base import ParamMeta

        if self._metadata is None:
            self._metadata = [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self]
        return self._metadata

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        with torch.no_grad():  # LoRA merges W + B·A: no graph (grad mode is per thread; the sender only reads)
            for name, tensor in self.learner.policy.merged_weights():
                yield name, tensor.detach().to(self.learner.compute_dtype)


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
    learner's process, next to the weights. Reads `policy.merged_weights()` and `compute_dtype` of the
    `rl.learner.Learner` it is mixed into."""

    def open_weight_transfer(self, transfer: str, workers: list) -> None:
        """Rendezvous with every rollout engine over vLLM's backend `transfer` (blocks until all have joined)."""
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        init_info = TRAINER_INIT_INFO[transfer](1 + len(workers))
        self._weight_transfer = WeightTransferTrainerFactory.trainer_init(
            init_info, client=RolloutClient(workers), source=LearnerWeights(self))

    def send_weights(self) -> None:
        """The current weights to every engine; returns when all of them have loaded them."""
        self._weight_transfer.send_weights()


# ---- choosing a backend ---------------------------------------------------------------------------------------

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
    """`auto` → `object_store` (see the module docstring); any other value as given."""
    return "object_store" if cfg.weight_sync == "auto" else cfg.weight_sync


def make_weight_sync(cfg: RolloutConfig) -> WeightSync:
    """The backend `rollout.weight_sync` names (checked first); `connect` it once the actors exist."""
    check_weight_sync(cfg)
    return SYNCS[resolve_weight_sync(cfg)]()
