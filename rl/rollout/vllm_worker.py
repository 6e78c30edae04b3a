"""What runs inside each vLLM worker, mixed into vLLM's worker class by class path (`worker_extension_cls`) and
reached through `collective_rpc`: the weight loader (`rl.weight_sync.engine_loader`) and the sampler's random
state (`rl.rollout.sampler_state`)."""

from __future__ import annotations

from typing import Any

from rl.rollout import sampler_state
from rl.weight_sync.engine_loader import WeightLoaderExtension


class VLLMWorkerExtension(WeightLoaderExtension):
    """Methods run inside the worker (one per tensor-parallel rank; in the engine's process when it has one)."""

    def sampler_state(self) -> dict[str, Any]:
        """This rank's generator states (`sampler_state.capture`)."""
        return sampler_state.capture()

    def set_sampler_state(self, states: list[dict[str, Any]]) -> bool:
        """`states`: every rank's, as `collective_rpc("sampler_state")` returned them (rank order)."""
        return sampler_state.restore(states[self.rank])


WORKER_EXTENSION_CLS = f"{VLLMWorkerExtension.__module__}.{VLLMWorkerExtension.__qualname__}"
"""`VLLMWorkerExtension`'s class path, as `LLM(worker_extension_cls=...)` takes it."""
