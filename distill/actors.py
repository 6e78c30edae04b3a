"""The Ray side of on-policy distillation: the teacher actor. On a single GPU it is `GPU_TENANTS` more actor
beside the learner and the rollout workers (their `extra_gpu_tenants`)."""

from __future__ import annotations

import ray

from distill.config import TeacherConfig
from distill.teacher import Teacher
from rl.actors import gpu_share

GPU_TENANTS = 1
"""Actors distillation adds beside GRPO's on a shared GPU: the teacher."""


def start_teacher(model_path: str, cfg: TeacherConfig, *, workers: int, temperature: float, top_k: int, seed: int):
    """The frozen teacher as a Ray actor (`distill.teacher.Teacher`) holding its share of a single GPU, shared with
    the learner and `workers` rollout workers (0 without CUDA)."""
    actor = ray.remote(num_cpus=0, num_gpus=gpu_share(workers, GPU_TENANTS))(Teacher)
    return actor.remote(model_path, dtype=cfg.dtype, temperature=temperature, top_k=top_k,
                        micro_batch_size=cfg.micro_batch_size, share_prompts=cfg.share_prompts,
                        torch_threads=cfg.torch_threads, seed=seed)
