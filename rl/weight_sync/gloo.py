"""The `gloo` weight-transfer backend for vLLM, both ends (`rollout.weight_sync=gloo`).

vLLM's dense NCCL backend with the broadcast over a gloo group: each weight goes from the learner (rank 0) to every
engine (ranks 1..N) as raw bytes (no dtype support question), and each engine streams it into the layerwise
reload as it arrives. vLLM's own backends (nccl, ipc) need CUDA; this is the same protocol where there is none.

Importing this module registers the backend with vLLM's factories, once per process. The processes that need it
import it: every vLLM engine (`rl.rollout.vllm_engine`, and `rl.weight_sync.engine_loader`, which vLLM loads into
each of its workers) and the learner when it opens the transfer (`rl.weight_sync.vllm_transfer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from vllm.distributed.weight_transfer.base import (
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory


@dataclass(kw_only=True)
class GlooInitInfo(WeightTransferInitInfo):
    """Where an engine's worker joins the learner's group: rank `rank_offset` + its own rank in the engine."""

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    """What one round broadcasts, in order."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    """The learner's side: it opens the group as rank 0 at `master_address:master_port`."""

    backend: ClassVar[str] = "gloo"
    master_address: str
    master_port: int
    world_size: int


def _gloo_group(address: str, port: int, rank: int, world_size: int) -> Any:
    """A gloo group outside torch.distributed's global state (a CPU engine runs its own gloo world group)."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    return stateless_init_torch_distributed_process_group(address, port, rank, world_size, backend="gloo")


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(-1).view(torch.uint8)


@contextmanager
def _alongside(fn: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Run `fn(*args)` on a thread while the body runs (the two sides of a collective must be in it at once), then
    raise its error. A failing body does not wait for the thread: its peers may never return."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args)
    try:
        yield
        future.result()
    finally:
        pool.shutdown(wait=False)


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """The engine's side: created by vLLM's worker when `weight_transfer_config.backend == "gloo"`."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.group = None

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        self.shutdown()  # a new learner replaces the old one's group
        self.group = _gloo_group(init_info.master_address, init_info.master_port,
                                 init_info.rank_offset + self.parallel_config.rank, init_info.world_size)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class ends with `torch.accelerator.synchronize()`, which raises without an accelerator; a gloo
        # broadcast is complete when its `wait()` returns
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("gloo weight transfer: init_weight_transfer_engine was not called")
        self.model.load_weights(self._received(update_info))

    def _received(self, update_info: GlooUpdateInfo) -> Iterator[tuple[str, torch.Tensor]]:
        for name, dtype_name, shape in zip(update_info.names, update_info.dtype_names, update_info.shapes,
                                           strict=True):
            tensor = torch.empty(shape, dtype=getattr(torch, dtype_name))
            self.group.broadcast(_as_bytes(tensor), 0).wait()
            yield name, tensor

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """The learner's side (one trainer process): opens the group, then broadcasts every weight of `source` per
    round while the engines receive (`client.update_weights` on a thread: both sides block in the broadcasts)."""

    init_info_cls = GlooTrainerInitInfo

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client: Any, source: Any = None) -> Any:
        if source is None or not init_info.is_sender:
            raise ValueError("the gloo weight transfer has a single trainer process (rank 0) with a WeightSource")
        engine = cls(client=client, source=source)
        engines = GlooInitInfo(master_address=init_info.master_address, master_port=init_info.master_port,
                               rank_offset=1, world_size=init_info.world_size)
        with _alongside(client.init_weight_transfer_engine, asdict(engines)):
            engine.group = _gloo_group(init_info.master_address, init_info.master_port, 0, init_info.world_size)
        return engine

    def send_weights(self) -> None:
        meta = self.source.metadata()
        update = GlooUpdateInfo(names=[m.name for m in meta], shapes=[list(m.shape) for m in meta],
                                dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta])
        self.client.start_weight_update()
        with _alongside(self.client.update_weights, asdict(update)):
            for _, tensor in self.source:
                self.group.broadcast(_as_bytes(tensor.cpu()), 0).wait()
        self.client.finish_weight_update()

    def shutdown(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None


WeightTransferEngineFactory.register_engine("gloo", GlooWeightTransferEngine)
WeightTransferTrainerFactory.register_engine("gloo", GlooTrainerWeightTransferEngine)
