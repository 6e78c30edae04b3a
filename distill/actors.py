"""The Ray side of on-policy distillation: the teacher actor. On GPUs it is `GPU_TENANTS` more actor on learner
rank 0's GPU (the session's `extra_gpu_tenants`, `rl.placement.Placement.extra`)."""

from __future__ import annotations

import ray

from distill.config import TeacherConfig
from distill.teacher import Teacher
from rl.actors import logged

GPU_TENANTS = 1
"""Actors distillation adds beside GRPO's on a shared GPU: the teacher."""


def start_teacher(model_path: str, cfg: TeacherConfig, *, options: dict, temperature: float, top_k: int, seed: int):
    """The frozen teacher as a Ray actor (`distill.teacher.Teacher`) scheduled with `options` (where and how much
    of a GPU: `rl.placement.Placement.extra()`)."""
    actor = ray.remote(logged(Teacher, "teacher")).options(**options)  # its logs: output_dir/logs/teacher.log
    return actor.remote(model_path, dtype=cfg.dtype, temperature=temperature, top_k=top_k,
                        micro_batch_size=cfg.micro_batch_size, share_prompts=cfg.share_prompts,
                        torch_threads=cfg.torch_threads, seed=seed)
