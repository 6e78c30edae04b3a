"""The random state a rollout engine samples from, as JSON: a resumed run draws the tokens the uninterrupted run
would have drawn.

Engines draw from their process's global generators, seeded once when the engine starts (`seed`): torch's — the
uniform of our inverse-CDF sampler on CPU (`rl.rollout.cpu_sampler`), the exponential noise of vLLM's sampler on
GPU, transformers' multinomial — and numpy's, from which vLLM's newer GPU model runner draws a seed for each request
(its noise then follows from that seed). A run that restarts its engines would start those streams again from the
seed, so its steps after a resume would be another draw than the uninterrupted run's. The checkpoint records every
one of them (`capture`, per sampling process) after its step's rollouts and a resume puts them back (`restore`)
once the engines are up and hold the resumed weights; engine start-up draws from them too (vLLM's warm-up sampler
run), so restoring after it is what makes the streams equal. Requests with their own seed (`SamplingSpec.seed`)
draw from their own generators instead.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """This process's generator states: {"torch": base64, "cuda": [base64 per device], "numpy": [...],
    "python": [...]} (cuda only where this process has initialised CUDA)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {"torch": _encode(torch.get_rng_state()),
                             "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
                             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict[str, Any]) -> bool:
    """Set this process's generators to `state` (`capture`'s). False when a part could not be put back: CUDA
    states of another number of devices (the rest is restored)."""
    torch.set_rng_state(_decode(state["torch"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = state.get("cuda")
    if not cuda:
        return True
    if not torch.cuda.is_available() or len(cuda) != torch.cuda.device_count():
        return False
    torch.cuda.set_rng_state_all([_decode(s) for s in cuda])
    return True


def _encode(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)
