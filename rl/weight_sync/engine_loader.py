"""What runs inside vLLM's worker to load new weights (`rl.rollout.vllm_engine.VLLMEngine`).

`WeightLoaderExtension` is mixed into vLLM's worker class by class path (`worker_extension_cls`): it receives
`(name, tensor)` pairs through `collective_rpc` and hands them to the worker's layerwise `reload_weights`, which
understands HF parameter names (it fuses q/k/v and gate/up) and redoes the post-load processing (the CPU backend
repacks linear weights after loading, so a plain `model.load_weights` no longer works on a running engine). Tied
weights need one more step (`_reprocess_shared_weights`), after this load and after a weight-transfer round alike.
"""

from __future__ import annotations

import torch

# vLLM imports this module in every worker process (by `worker_extension_cls`) before the worker creates its
# weight-transfer engine: the `gloo` backend is registered there even where a worker has a process of its own.
import rl.weight_sync.gloo  # noqa: F401


class WeightLoaderExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`); methods run inside the worker."""

    def load_named_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        device = self.model_runner.device
        self.reload_weights(weights_iterator=[(name, t.to(device)) for name, t in weights], is_checkpoint_format=True)
        self.reprocess_shared_weights()
        return len(weights)

    def reprocess_shared_weights(self) -> None:
        _reprocess_shared_weights(self.model_runner.get_model())


def _reprocess_shared_weights(model: torch.nn.Module) -> None:
    """Redo post-load processing for every module whose weight tensor is shared (tied embeddings).

    vLLM's layerwise reload processes a tied tensor for one owner only; on CPU the `lm_head` keeps a pre-packed
    GEMM copy of its weight, which would silently stay at the *old* weights (measured: logprobs off by ~0.7 after
    one update of a tied model, exact for an untied one)."""
    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and not weight.is_meta:
            owners.setdefault(weight.data_ptr(), []).append(module)
    for modules in owners.values():
        if len(modules) > 1:
            for module in modules:
                method = getattr(module, "quant_method", None)
                if method is not None:
                    method.process_weights_after_loading(module)


WORKER_EXTENSION_CLS = f"{WeightLoaderExtension.__module__}.{WeightLoaderExtension.__qualname__}"
"""`WeightLoaderExtension`'s class path, as `LLM(worker_extension_cls=...)` takes it."""
