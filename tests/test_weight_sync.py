"""Weight sync learner → rollout engines (`rl.weight_sync`) with real Ray actors and the real vLLM engine on the
tiny model: after learner steps pushed through a backend, every engine scores a fixed sequence as the learner
does, and differently from before. CPU: the object store and vLLM's weight-transfer API over gloo (two engines,
so two ranks besides the learner's), full fine-tuning and LoRA, from one learner and from two sharded ranks. GPU:
vLLM's own ipc and nccl backends."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from rl.config import LoraConfig, RolloutConfig
from rl.weight_sync import SYNCS, make_weight_sync, resolve_weight_sync

ROOT = Path(__file__).parents[1]

# As in tests/test_vllm_engine.py: the learner's bf16 parameters vs vLLM's bf16 kernels agree to a few 1e-3 nats
# per token.
LOGPROB_TOL = 0.03
PROMPT = list(range(30, 50))


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def ray_session():
    from rl.actors import init_ray

    init_ray(None)
    yield
    ray.shutdown()


def _learner(tiny_model: Path, lora: LoraConfig | None = None, learners: int = 1):
    from rl.actors import start_learner
    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig

    return start_learner(str(tiny_model), ModelConfig(path=str(tiny_model), lora=lora),
                         TrainerConfig(max_steps=2, lr=2e-2, learners=learners, torch_threads=1), AlgorithmConfig(),
                         1.0, num_workers=1, learners=learners)


def _rollouts(tiny_model: Path, workers: int, weight_transfer: str):
    from rl.actors import RolloutGroup

    return RolloutGroup(workers, "vllm", dict(model_path=str(tiny_model), kv_cache_gib=0.25, max_model_len=256,
                                              gpu_memory_utilization=0.2, weight_transfer=weight_transfer))


def _steps_reach_every_engine(learner, workers: list, sync) -> None:
    """Two learner steps, each pushed through `sync` (the second checks a reload after a reload): every engine
    then scores a fixed completion as the learner does, and no longer as it did before."""
    from rl.learner import TrainBatch
    from rl.rollout import SamplingSpec

    group = ray.get(workers[0].generate.remote([PROMPT], SamplingSpec(n=8, max_new_tokens=12)))[0]
    fixed = group[0].token_ids

    def engine_scores() -> list[list[float]]:
        return ray.get([w.score.remote(PROMPT, fixed) for w in workers])

    sync.push()  # the engines start from the learner's current weights
    before = engine_scores()
    batch = TrainBatch([PROMPT] * 8, [c.token_ids for c in group], [c.logprobs for c in group], [1.0, -1.0] * 4)
    for _ in range(2):
        learner.call("train", batch)
        sync.push()
    expected = learner.call("score", PROMPT, fixed)
    for engine_before, engine_after in zip(before, engine_scores()):
        assert _max_diff(engine_after, expected) < LOGPROB_TOL
        assert _max_diff(engine_after, engine_before) > 0.1  # the engine really runs the new weights


# ---- CPU: object store and gloo ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gloo_engines(ray_session, tiny_model: Path):
    """Two vLLM engines that can receive either way: `load_weights` always works, gloo is configured."""
    return _rollouts(tiny_model, workers=2, weight_transfer="gloo")


def _sync_and_check(learner, workers: list, backend: str) -> None:
    sync = SYNCS[backend]()
    sync.connect(learner, workers)
    _steps_reach_every_engine(learner, workers, sync)
    for actor in learner.actors:
        ray.kill(actor)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [None, LoraConfig(r=8, alpha=16)], ids=["full", "lora"])
@pytest.mark.parametrize("backend", ["object_store", "gloo"])
def test_learner_steps_reach_every_engine(backend: str, lora: LoraConfig | None, gloo_engines,
                                          tiny_model: Path) -> None:
    _sync_and_check(_learner(tiny_model, lora), gloo_engines.workers, backend)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "lora"), [("object_store", None), ("gloo", None),
                                               ("gloo", LoraConfig(r=8, alpha=16))], ids=["object_store", "gloo",
                                                                                         "gloo-lora"])
def test_a_sharded_learners_steps_reach_every_engine(backend: str, lora: LoraConfig | None, gloo_engines,
                                                     tiny_model: Path) -> None:
    """Two learner ranks (FSDP2 over gloo): every rank gathers each layer, rank 0 sends; the engines then score
    as the learner does."""
    _sync_and_check(_learner(tiny_model, lora, learners=2), gloo_engines.workers, backend)


@pytest.mark.slow
def test_a_tensor_parallel_engine_receives_the_learners_weights(ray_session, tiny_model: Path) -> None:
    """`rollout.tensor_parallel_size=2` on CPU: vLLM's two worker processes (each bound to its share of the cores)
    split the tiny model; the object store's weights reach both shards."""
    from rl.actors import RolloutGroup

    rollouts = RolloutGroup(1, "vllm", dict(model_path=str(tiny_model), kv_cache_gib=0.25, max_model_len=256,
                                            tensor_parallel_size=2))
    _sync_and_check(_learner(tiny_model), rollouts.workers, "object_store")
    for worker in rollouts.workers:
        ray.kill(worker)


# ---- GPU: vLLM's own backends -----------------------------------------------------------------------------------


def _gpus_with_vllm() -> int:
    import torch

    return torch.cuda.device_count() if importlib.util.find_spec("vllm") else 0


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.parametrize(("transfer", "gpus"), [("ipc", 1), ("nccl", 2)])
def test_gpu_weight_transfer_reaches_the_engine(transfer: str, gpus: int, ray_session, tiny_model: Path) -> None:
    if _gpus_with_vllm() < gpus:
        pytest.skip(f"rollout.weight_sync={transfer} needs {gpus} CUDA GPU(s) and vllm installed")
    learner = _learner(tiny_model)
    rollouts = _rollouts(tiny_model, workers=1, weight_transfer=transfer)
    sync = make_weight_sync(RolloutConfig(backend="vllm", workers=1, weight_sync=transfer))
    sync.connect(learner, rollouts.workers)
    _steps_reach_every_engine(learner, rollouts.workers, sync)
    for actor in [learner, *rollouts.workers]:
        ray.kill(actor)


# ---- choosing a backend: errors name the key ------------------------------------------------------------------


def _no_gpus() -> bool:
    import torch

    return torch.cuda.device_count() == 0


@pytest.mark.skipif(not _no_gpus(), reason="checks the error on a machine without CUDA")
def test_gpu_backends_without_cuda_fail_naming_the_key(make_config) -> None:
    for name in ("nccl", "ipc"):
        with pytest.raises(ValueError, match=f"rollout.weight_sync={name} needs .* CUDA GPU"):
            make_weight_sync(RolloutConfig(backend="vllm", weight_sync=name))
    out = subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(make_config()), "--check",
                          "rollout.backend=vllm", "rollout.weight_sync=nccl"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: rollout.weight_sync=nccl needs 2 CUDA GPU(s)"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_weight_transfer_needs_the_vllm_backend() -> None:
    with pytest.raises(ValueError, match="rollout.weight_sync=gloo .* needs rollout.backend=vllm"):
        RolloutConfig(backend="hf", weight_sync="gloo")


def test_auto_is_the_object_store() -> None:
    # the tested path, with or without CUDA, until ipc/nccl have passed test_gpu_weight_transfer_reaches_the_engine
    assert resolve_weight_sync(RolloutConfig(backend="vllm")) == "object_store"
    assert resolve_weight_sync(RolloutConfig(backend="hf")) == "object_store"
