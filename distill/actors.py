"""The Ray side of on-policy distillation: the teacher actor and the student's rollout workers, sized so that
the learner, the rollout workers and the teacher share one GPU (`rl.actors` sizes shares for the learner and
the workers only, which would leave the teacher on the CPU of a GPU machine)."""

from __future__ import annotations

from typing import Any

import ray

from distill.config import TeacherConfig
from distill.teacher import Teacher
from rl.actors import RolloutGroup, RolloutWorker, _gpu_share


def gpu_share(workers: int) -> float:
    """Each GPU actor's fraction of a single-GPU node: the learner, `workers` rollout workers and the teacher
    (0 without CUDA). Pass `num_workers=workers + 1` to `rl.actors.start_learner` for the learner's."""
    return _gpu_share(workers + 2)


def start_teacher(model_path: str, cfg: TeacherConfig, *, gpu_share: float, temperature: float, top_k: int,
                  seed: int):
    """The frozen teacher as a Ray actor (`distill.teacher.Teacher`) holding `gpu_share` of the GPU."""
    actor = ray.remote(num_cpus=0, num_gpus=gpu_share)(Teacher)
    return actor.remote(model_path, dtype=cfg.dtype, temperature=temperature, top_k=top_k,
                        micro_batch_size=cfg.micro_batch_size, share_prompts=cfg.share_prompts,
                        torch_threads=cfg.torch_threads, seed=seed)


class StudentRollouts(RolloutGroup):
    """`rl.actors.RolloutGroup` whose workers request `gpu_share(workers)`, leaving the teacher its part."""

    def __init__(self, workers: int, backend: str, engine_kwargs: dict[str, Any]):
        actor = ray.remote(num_cpus=0, num_gpus=gpu_share(workers))(RolloutWorker)
        self.workers = [actor.remote(backend, {**engine_kwargs, "seed": engine_kwargs.get("seed", 0) + i})
                        for i in range(workers)]
