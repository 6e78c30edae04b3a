"""Rollout engines behind one interface (`RolloutEngine`), selected by `rollout.backend`.

Engines receive weights; they never import the learner. `ENGINES` maps the backend name to the class path so
that importing this package does not import vLLM or transformers.
"""

from typing import Any

from rl.rollout.base import Completion, RolloutEngine, SamplingSpec

ENGINES = {
    "vllm": "rl.rollout.vllm_engine:VLLMEngine",
    "hf": "rl.rollout.hf_engine:HFEngine",
}


def make_engine(backend: str, **kwargs) -> RolloutEngine:
    """Build the engine registered under `backend` (imports its module only now)."""
    import importlib

    module, _, cls = ENGINES[backend].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def engine_kwargs(engine: Any, *, model_path: str, dtype: str, seed: int, max_model_len: int,
                  **extra: Any) -> dict[str, Any]:
    """The constructor arguments of the engine an `rl.config.EngineConfig` section (`rollout`, `engine`,
    `generate`) describes, for `model_path` in `dtype`; `extra` adds what the caller's side needs (the weight
    sync's receiving backend). Pass them to `make_engine(engine.backend, **...)` or to a rollout worker."""
    return dict(model_path=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                kv_cache_gib=engine.kv_cache_gib, gpu_memory_utilization=engine.gpu_memory_utilization,
                enforce_eager=engine.enforce_eager,
                **({"tensor_parallel_size": engine.tensor_parallel_size} if engine.tensor_parallel_size > 1 else {}),
                **extra)


__all__ = ["ENGINES", "Completion", "RolloutEngine", "SamplingSpec", "engine_kwargs", "make_engine"]
