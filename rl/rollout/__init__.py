"""Rollout engines behind one interface (`RolloutEngine`), selected by `rollout.backend`.

Engines receive weights; they never import the learner. `ENGINES` maps the backend name to the class path so
that importing this package does not import vLLM or transformers.
"""

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


__all__ = ["ENGINES", "Completion", "RolloutEngine", "SamplingSpec", "make_engine"]
