"""What runs inside vLLM's worker to load new weights (`rl.rollout.vllm_engine.VLLMEngine`).

`WeightLoaderExtension` is mixed into vLLM's worker class (`rl.rollout.vllm_worker`, by class path): it receives
`(name, tensor)` pairs through `collective_rpc` and hands them to the worker's layerwise `reload_weights`, which
understands HF parameter names (it fuses q/k/v and gate/up) and redoes the post-load processing (the CPU backend
repacks linear weights after loading, so a plain `model.load_weights` no longer works on a running engine). Tied
weights need one more step (`_reprocess_shared_weights`), after this load and after a weight-transfer round alike.
"""

from __future__ import annotations

import logging

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

    def silence_expected_reload_warnings(self) -> list[str]:
        """Install `ExpectedReloadWarnings` for this worker's model; returns the layer classes it silences."""
        return sorted(install_reload_warning_filter(self.model_runner.get_model()).layers)


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


RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
RELOAD_WARNING = "%s: Failed to load weights"
"""What vLLM's layerwise reload logs (as a warning, args: the layer's class name) for a layer that received no
weight in a reload; it then keeps the layer's old tensors."""


def layers_that_load_nothing(model: torch.nn.Module) -> set[str]:
    """The layer classes of `model` for which a reload with every checkpoint weight is expected to receive nothing,
    so that `RELOAD_WARNING` for them is no skipped update:

    - layers whose tensors are all non-persistent buffers: computed from the config, never in a checkpoint nor in
      what the learner sends (RoPE's `cos_sin_cache`), so their old values are the right ones;
    - layers whose every parameter belongs to an earlier layer too (a tied `lm_head`, whose weight is the
      embedding's): the update reaches it through that layer, and `_reprocess_shared_weights` redoes its
      post-load processing.

    A class is in the set only when every instance of it qualifies (an untied `lm_head` is not)."""
    first_owner: dict[int, torch.nn.Module] = {}
    qualifies: dict[str, bool] = {}
    for module in model.modules():
        params = [p for p in module._parameters.values() if p is not None]
        buffers = {n for n, b in module._buffers.items() if b is not None}
        for param in params:
            first_owner.setdefault(id(param), module)
        if not params and not buffers:
            continue
        derived = not params and buffers <= module._non_persistent_buffers_set
        # the alias is the later module (vLLM loads a tied weight under the embedding's name, skipping lm_head's)
        tied = bool(params) and not buffers and all(first_owner[id(p)] is not module for p in params)
        name = type(module).__name__
        qualifies[name] = qualifies.get(name, True) and (derived or tied)
    return {name for name, ok in qualifies.items() if ok}


class ExpectedReloadWarnings(logging.Filter):
    """Drops `RELOAD_WARNING` for `layers` (`layers_that_load_nothing`); the warning for any other layer (a
    weight really missing from an update) still goes through."""

    def __init__(self, layers: set[str]):
        super().__init__()
        self.layers = layers

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == RELOAD_WARNING and record.args and record.args[0] in self.layers)


def install_reload_warning_filter(model: torch.nn.Module) -> ExpectedReloadWarnings:
    """Replace this process's `ExpectedReloadWarnings` (if any) by one for `model`."""
    logger = logging.getLogger(RELOAD_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, ExpectedReloadWarnings)]:
        logger.removeFilter(old)
    new = ExpectedReloadWarnings(layers_that_load_nothing(model))
    logger.addFilter(new)
    return new
