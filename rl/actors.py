"""The Ray side: thin actor wrappers around the plain `Learner` and rollout engines, and a `RolloutGroup`
that shards prompts across rollout workers and pushes weights to all of them.

Weight sync: the learner's `weights()` result goes into Ray's object store once (`ObjectRef`), and every
worker pulls it from there into its engine's `load_weights` (zero-copy reads on the same node).
"""

from __future__ import annotations

import os
from typing import Any

import ray

from rl.rollout import Completion, SamplingSpec, make_engine


class RolloutWorker:
    """Holds one rollout engine inside a Ray actor."""

    def __init__(self, backend: str, engine_kwargs: dict[str, Any], torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.engine = make_engine(backend, **engine_kwargs)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        return self.engine.generate(prompts, spec)

    def load_weights(self, weights: list) -> None:
        self.engine.load_weights(weights)

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        return self.engine.score(prompt, completion)


def init_ray(address: str | None) -> None:
    """Connect to `address`, or start a local Ray sized to this machine (quiet, no dashboard)."""
    if ray.is_initialized():
        return
    env = {"TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if address:
        ray.init(address=address, runtime_env={"env_vars": env})
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env}, configure_logging=False)


def _gpu_share(parts: int) -> float:
    """On a single-GPU node the learner and the rollout engines share the device."""
    import torch

    return 1.0 / parts if torch.cuda.is_available() else 0.0


def start_learner(*args: Any, num_workers: int, learner_cls: type | None = None, **kwargs: Any):
    """The learner actor: `learner_cls` (default `rl.learner.Learner`; a subclass overrides its `objective`)."""
    from rl.learner import Learner

    # num_cpus=0: the learner and the engines take turns on the same cores (synchronous GRPO).
    actor = ray.remote(num_cpus=0, num_gpus=_gpu_share(num_workers + 1))(learner_cls or Learner)
    return actor.remote(*args, **kwargs)


class RolloutGroup:
    """`workers` rollout actors; prompts are sharded across them in contiguous blocks."""

    def __init__(self, workers: int, backend: str, engine_kwargs: dict[str, Any]):
        actor = ray.remote(num_cpus=0, num_gpus=_gpu_share(workers + 1))(RolloutWorker)
        self.workers = [actor.remote(backend, {**engine_kwargs, "seed": engine_kwargs.get("seed", 0) + i})
                        for i in range(workers)]

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        shards = _split(prompts, len(self.workers))
        futures = [w.generate.remote(shard, spec) for w, shard in zip(self.workers, shards) if shard]
        return [group for result in ray.get(futures) for group in result]

    def load_weights(self, weights_ref: ray.ObjectRef) -> None:
        """`weights_ref` is the learner's `weights.remote()` result: each worker fetches it from the store."""
        ray.get([w.load_weights.remote(weights_ref) for w in self.workers])

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        return ray.get(self.workers[0].score.remote(prompt, completion))


def _split(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
