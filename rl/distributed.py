"""The learner's process group: N ranks that shard one model with FSDP2 (`trainer.learners: N`).

Plain torch.distributed, no Ray: a rank joins its group from a `ProcessGroupSpec` (what `rl.actors.LearnerGroup`
hands each Ray actor) or, under `torchrun`, from the environment. gloo on CPU, NCCL (with gloo beside it for CPU
tensors) on GPUs. The model is sharded with `fully_shard` per decoder layer and at the root: each rank holds 1/N of
the parameters, of their gradients and of AdamW's state; with `model.dtype: bfloat16` the shards are the float32
masters and FSDP2 computes in bf16 (`MixedPrecisionPolicy`), reducing gradients in float32.

Data parallelism is exact: every rank receives the whole batch, plans it the same way, and works on its share of
each mini-batch's prompt groups (`split_groups`); the loss is normalised by the mini-batch's global counts and the
gradients are summed (not averaged) across ranks, so the update equals one learner's. Every rank must run the same
number of forward/backward passes (FSDP2's collectives pair up across ranks): a rank with fewer micro-batches
pads with passes of weight 0 (`rl.learner.Learner._micro_batches`).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroupSpec:
    """Where rank `rank` of `world_size` meets the others: rank 0's `address:port`."""

    address: str
    port: int
    rank: int
    world_size: int


@dataclass(frozen=True)
class World:
    """This process's place in the learner group (`size` 1: a single, unsharded learner)."""

    rank: int = 0
    size: int = 1

    @property
    def sharded(self) -> bool:
        return self.size > 1


def backend() -> str:
    """gloo on CPU; NCCL for CUDA tensors with gloo for CPU ones on GPUs (a CPU build has no NCCL at all)."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def join(spec: ProcessGroupSpec | None = None, timeout_s: float = 1800.0) -> World:
    """Join the learner's process group: from `spec`, else from torchrun's environment (`WORLD_SIZE` > 1), else
    stay a single process. Idempotent: an already initialised group is used as is."""
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    if spec is None:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return World()
        init = "env://"
        rank = int(os.environ["RANK"])
    else:
        if spec.world_size == 1:
            return World()
        init, rank, size = f"tcp://{spec.address}:{spec.port}", spec.rank, spec.world_size
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend(), init_method=init, rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return World(rank, size)


def device() -> torch.device:
    """This rank's device: its GPU (`LOCAL_RANK` under torchrun; Ray shows each actor only its own), else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of an HF causal LM (peft-wrapped or not): the units FSDP2 shards one by one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(base.get_decoder(), "layers", None)
    if layers is None:
        raise ValueError(f"cannot find the decoder layers of {type(base).__name__} to shard (expected "
                         "model.get_decoder().layers)")
    return list(layers)


def shard(model: torch.nn.Module, compute_dtype: torch.dtype | None, root: torch.nn.Module | None = None, *,
          layers_run_twice: bool = False) -> None:
    """`fully_shard` each decoder layer of `model`, then `root` (default `model`; a module around it whose forward
    is what runs): the root unit holds the rest (embeddings, final norm, output layer). With
    `compute_dtype` (bf16), the float32 shards are cast for forward/backward and gradients reduced in float32.
    Gradients are summed across ranks: the loss is already normalised by the global batch.

    `layers_run_twice`: each forward calls every layer twice (the shared-prompt layout: the prompts, then the
    completions on their cached keys/values). FSDP2 frees a layer's gathered parameters after its first backward
    and the second would find them gone, so they stay gathered through the backward passes of an optimizer step
    (one compute-dtype copy of the layers per rank) until `release` drops them."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if compute_dtype is not None and compute_dtype != torch.float32:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    root = root if root is not None else model
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
        if layers_run_twice:
            layer.set_reshard_after_backward(False)
    fully_shard(root, **kwargs)
    for unit in fsdp_units(root):
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)  # gloo has no PREMUL_SUM


def release(root: torch.nn.Module) -> None:
    """Drop every gathered parameter (after the backward passes of a step, before the optimizer changes the
    shards: the next forward gathers the updated ones)."""
    for unit in fsdp_units(root):
        unit.reshard()


def fsdp_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The FSDP2-sharded modules of `model`, root first."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def units_and_names(model: torch.nn.Module, root: torch.nn.Module | None = None,
                    ) -> list[tuple[torch.nn.Module | None, list[str]]]:
    """Each FSDP unit of `root` (default `model`) with the names (in `model`) of the parameters it owns, not those
    of a nested unit, root first; one `(None, all names)` entry for an unsharded model. A unit outside `model`
    (a wrapper around it) owns whatever no unit inside does. Gathering goes unit by unit in this order."""
    names = [name for name, _ in model.named_parameters()]
    units = fsdp_units(root if root is not None else model)
    if not units:
        return [(None, names)]
    prefixes = {id(m): p for p, m in model.named_modules()}
    owned: list[tuple[torch.nn.Module, list[str]]] = [(u, []) for u in units]
    for name in names:  # the innermost unit whose prefix the name starts with
        best, best_len = 0, -1
        for k, unit in enumerate(units):
            prefix = prefixes.get(id(unit), "")
            if (not prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = k, len(prefix)
        owned[best][1].append(name)
    return [(u, n) for u, n in owned if n]


@torch.no_grad()
def gathered_parameters(model: torch.nn.Module, root: torch.nn.Module | None = None,
                        ) -> Iterator[tuple[torch.nn.Module | None, dict[str, torch.Tensor]]]:
    """Unit by unit (`units_and_names`), the full parameters of `model` that unit owns, by name, in the compute
    dtype, valid only until the next item. Sharded: every rank must iterate to the end together (each unit is an
    all-gather)."""
    for unit, names in units_and_names(model, root):
        if unit is not None:
            unit.unshard()
        params = dict(model.named_parameters())
        try:
            yield unit, {name: params[name] for name in names}
        finally:
            if unit is not None:
                unit.reshard()


def all_reduce_sum(metrics: dict[str, float], world: World) -> dict[str, float]:
    """The sum over ranks of each value (every rank passes the same keys)."""
    if not world.sharded:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


def all_reduce_max(value: int, world: World) -> int:
    if not world.sharded:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def merge_from_ranks(values: list, world: World) -> list:
    """Each rank fills the entries of its share (None elsewhere); every rank gets the merged list."""
    if not world.sharded:
        return values
    parts: list[list | None] = [None] * world.size
    dist.all_gather_object(parts, values)
    return [next((p[i] for p in parts if p[i] is not None), None) for i in range(len(values))]


def split_groups(n: int, group_size: int, world: World) -> list[int]:
    """This rank's share of sequences 0..n-1: a contiguous block of whole groups of `group_size` (the first
    `groups mod N` ranks take one group more; a rank may get none when there are fewer groups than ranks)."""
    groups = -(-n // group_size)
    per, extra = divmod(groups, world.size)
    first = world.rank * per + min(world.rank, extra)
    count = per + (1 if world.rank < extra else 0)
    return list(range(first * group_size, min((first + count) * group_size, n)))


def local_numel(tensors: list[torch.Tensor]) -> int:
    """Elements this rank holds of `tensors` (a DTensor's local shard, a plain tensor's all)."""
    return sum((t.to_local() if hasattr(t, "to_local") else t).numel() for t in tensors)
