"""Where a run's actors go (`cluster:` in the config): Ray placement groups for the learner ranks and the rollout
engines, on one machine or across nodes.

- Learner ranks: one placement group of `trainer.learners` bundles, packed onto as few nodes as possible (their
  FSDP2 collectives are the heaviest traffic), each bundle with `cluster.learner_resources` and, on GPUs, one GPU.
- Rollout engines: one bundle each with `cluster.rollout_resources`. On GPUs, `colocated` puts engine i into
  learner bundle i mod N, sharing that GPU (the learner and the engines take turns, as in synchronous GRPO);
  `disaggregated` (or a GPU weight transfer over NCCL, which cannot run two ranks on one GPU) gives each engine
  `rollout.tensor_parallel_size` GPUs of its own.
- Without GPUs every actor asks for 0 CPUs (they take turns on the same cores); a bundle reserves a token 0.01 CPU
  only so that it is not empty.

Nothing here starts an actor: `plan` reserves the bundles and hands out `.options(...)` for each actor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TOKEN_CPU = 0.01
"""CPU reserved per bundle: a placement-group bundle may not be empty."""


@dataclass
class Placement:
    """Scheduling options for every actor of a run (`.options(**placement.learner(rank))`, ...)."""

    learner_group: Any  # ray.util.placement_group.PlacementGroup
    learner_gpus: float
    rollout_group: Any  # the learners' group when engines are colocated with them
    rollout_bundles: list[int]
    worker_gpus: float
    extra_gpus: float = 0.0
    engines_share_gpus: bool = False
    """Engines live on the learners' GPUs (colocated on GPUs): they can sleep while the learner trains."""

    def learner(self, rank: int) -> dict[str, Any]:
        return _options(self.learner_group, rank, self.learner_gpus)

    def worker(self, i: int) -> dict[str, Any]:
        return _options(self.rollout_group, self.rollout_bundles[i], self.worker_gpus)

    def extra(self) -> dict[str, Any]:
        """Another actor beside learner rank 0 (a distillation teacher), sharing its GPU."""
        return _options(self.learner_group, 0, self.extra_gpus)


def _options(group: Any, bundle: int, gpus: float) -> dict[str, Any]:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"num_cpus": 0, "num_gpus": gpus, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        group, placement_group_bundle_index=bundle, placement_group_capture_child_tasks=False)}


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count()


def _check_colocated_engine(tensor_parallel_size: int) -> None:
    if tensor_parallel_size > 1:
        raise ValueError(f"rollout.tensor_parallel_size={tensor_parallel_size} needs cluster.placement=disaggregated "
                         "on GPUs (a colocated engine lives on one learner's GPU)")


def check(cfg: Any) -> None:
    """Before anything starts (`RunConfig`): on a machine with GPUs and no `ray_address`, the GPUs the placement
    needs are there; a ValueError names the keys otherwise. (A cluster's GPUs are checked when `plan` reserves
    them; without GPUs everything runs on the CPU and there is nothing to count.)"""
    have = _cuda_devices()
    if cfg.ray_address or not have:
        return
    rollout, learners = cfg.rollout, cfg.trainer.learners
    own = cfg.cluster.placement == "disaggregated" or rollout.weight_sync == "nccl"
    need = learners + (rollout.workers * rollout.tensor_parallel_size if own else 0)
    if need > have:
        why = (f"trainer.learners={learners} + rollout.workers={rollout.workers} × "
               f"rollout.tensor_parallel_size={rollout.tensor_parallel_size} (cluster.placement="
               f"{cfg.cluster.placement}, rollout.weight_sync={rollout.weight_sync})" if own
               else f"trainer.learners={learners}, one GPU per rank")
        raise ValueError(f"{why} need {need} GPU(s) and this machine has {have}")
    if not own:
        _check_colocated_engine(rollout.tensor_parallel_size)


def plan(*, learners: int, workers: int, tensor_parallel_size: int, placement: str,
         learner_resources: dict[str, float], rollout_resources: dict[str, float], engines_own_gpus: bool = False,
         extra_gpu_tenants: int = 0, timeout_s: float = 300.0) -> Placement:
    """Reserve the bundles of `learners` learner ranks and `workers` engines (Ray must be initialised) and return
    their options. Raises ValueError naming the `cluster.*` / `trainer.*` key when the cluster cannot hold them."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0) > 0
    own = engines_own_gpus or placement == "disaggregated"
    tp = tensor_parallel_size
    learner_bundle = {"CPU": TOKEN_CPU, **learner_resources, **({"GPU": 1.0} if gpus else {})}
    learner_group = _reserve([learner_bundle] * learners, "trainer.learners / cluster.learner_resources",
                             timeout_s)
    if gpus and not own:  # engines (and a teacher) share the learners' GPUs
        _check_colocated_engine(tp)
        tenants = 1 + math.ceil(workers / learners) + extra_gpu_tenants
        return Placement(learner_group, 1.0 / tenants, learner_group, [i % learners for i in range(workers)],
                         1.0 / tenants, extra_gpus=1.0 / tenants, engines_share_gpus=True)
    engine_bundle = {"CPU": TOKEN_CPU, **rollout_resources, **({"GPU": float(tp)} if gpus else {})}
    rollout_group = _reserve([engine_bundle] * workers, "rollout.workers / cluster.rollout_resources", timeout_s)
    learner_gpus = 1.0 / (1 + extra_gpu_tenants) if gpus else 0.0
    return Placement(learner_group, learner_gpus, rollout_group, list(range(workers)), float(tp) if gpus else 0.0,
                     extra_gpus=learner_gpus if extra_gpu_tenants else 0.0)


def _reserve(bundles: list[dict[str, float]], keys: str, timeout_s: float) -> Any:
    """A PACK placement group of `bundles`, ready; a clear error when the cluster lacks the resources."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    have = ray.cluster_resources()
    need: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            need[name] = need.get(name, 0.0) + amount
    missing = {name: amount for name, amount in need.items() if have.get(name, 0.0) + 1e-9 < amount}
    if missing:
        raise ValueError(f"{keys}: the actors need {_fmt(need)} in all but the Ray cluster has "
                         f"{_fmt({k: have.get(k, 0.0) for k in need})}")
    group = placement_group(bundles, strategy="PACK")
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        raise ValueError(f"{keys}: no room for {len(bundles)} bundle(s) of {_fmt(bundles[0])} within "
                         f"cluster.placement_timeout_s={timeout_s:g} s (other actors may hold the resources)") from None
    return group


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


def node_of(actor: Any) -> str:
    """The Ray node id an actor runs on."""
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))
