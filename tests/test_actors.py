"""The environment every Ray actor starts with (`rl.actors.init_ray`): the forced settings, and the tunables
(allocator, vLLM-CPU threads) unless the driver's environment sets them; rollout workers use every core."""

from __future__ import annotations

import os

import ray

from rl.actors import ACTOR_ENV, ACTOR_ENV_DEFAULTS, RolloutGroup, init_ray


def test_actors_start_with_the_tunables_unless_the_driver_sets_them(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")  # the driver's own value wins
    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    init_ray(None)
    try:
        @ray.remote(num_cpus=0)
        def environment(keys: list[str]) -> dict[str, str | None]:
            return {key: os.environ.get(key) for key in keys}

        seen = ray.get(environment.remote([*ACTOR_ENV, *ACTOR_ENV_DEFAULTS]))
    finally:
        ray.shutdown()
    assert seen == {**ACTOR_ENV_DEFAULTS, **ACTOR_ENV, "MALLOC_TRIM_THRESHOLD_": "12345"}
    assert seen["MALLOC_MMAP_MAX_"] == "0" and seen["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_rollout_workers_sample_on_every_core_although_ray_gives_them_one_thread(tiny_model) -> None:
    init_ray(None)
    try:
        group = RolloutGroup(1, "hf", {"model_path": str(tiny_model), "dtype": "float32"})

        def threads(worker) -> tuple[str | None, int]:
            import torch

            return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()

        omp, torch_threads = ray.get(group.workers[0].__ray_call__.remote(threads))
    finally:
        ray.shutdown()
    assert omp == "1"  # what Ray sets for an actor that reserves no CPU
    assert torch_threads == len(os.sched_getaffinity(0))
