"""The learner on a tiny model: every trainable parameter moves, micro-batching is exact, LoRA merges right,
checkpoints are HF directories that load back."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rl.config import AlgorithmConfig, LoraConfig, ModelConfig, TrainerConfig
from rl.learner import Learner, TrainBatch


def _batch(seed: int = 0, n: int = 8, group: int = 1) -> TrainBatch:
    """n sequences; each prompt repeated `group` times in a row (a GRPO group)."""
    rng = random.Random(seed)
    prompts = [p for _ in range(n // group) for p in [[rng.randrange(3, 500) for _ in range(rng.randrange(4, 12))]] * group]
    completions = [[rng.randrange(3, 500) for _ in range(rng.randrange(1, 10))] for _ in range(n)]
    old = [[-6.2 + rng.uniform(-0.1, 0.1) for _ in c] for c in completions]
    return TrainBatch(prompts, completions, old, [rng.uniform(-1, 1) for _ in range(n)])


def _learner(path: Path, *, lora: LoraConfig | None = None, kl_beta: float = 0.0, dtype: str = "bfloat16",
             algorithm: dict | None = None, resume_from: str | None = None, **trainer) -> Learner:
    trainer = {"max_steps": 1, "lr": 1e-2, "max_grad_norm": 1e9, **trainer}
    return Learner(str(path), ModelConfig(path=str(path), lora=lora, dtype=dtype), TrainerConfig(**trainer),
                   AlgorithmConfig(kl_beta=kl_beta, **(algorithm or {})), temperature=1.0, resume_from=resume_from,
                   max_completion_tokens=10)


def test_one_step_changes_every_trainable_parameter(tiny_model: Path) -> None:
    learner = _learner(tiny_model)
    before = {n: p.detach().clone() for n, p in learner.policy.model.named_parameters()}
    metrics = learner.train(_batch())
    unchanged = [n for n, p in learner.policy.model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    assert metrics["grad_norm"] > 0 and 0 < metrics["entropy"] <= torch.log(torch.tensor(512.0)).item() + 1e-3


@pytest.mark.parametrize("loss", [
    {"aggregation": "token-mean"}, {"aggregation": "seq-mean-token-mean"}, {"aggregation": "seq-mean-token-sum-norm"},
    {"type": "gspo", "eps_low": 3e-4, "eps_high": 4e-4, "aggregation": "seq-mean-token-mean"}])
@pytest.mark.parametrize("split", [{"micro_batch_size": 2, "share_prompts": False}, {"micro_batch_size": 3},
                                   {"micro_batch_size": 8}, {"token_budget": 40}],
                         ids=["padded-4x2", "shared-3+3+2", "shared-1x8", "packed"])
def test_micro_batching_gives_the_same_gradients(tiny_model: Path, loss: dict, split: dict) -> None:
    # float32: under bf16 autocast, different padding shapes round differently (~1% relative noise), which would
    # hide a wrong normalisation; in float32 one padded 1 × 8 pass and any other split/layout must agree to float
    # precision. Groups of 2 (and a split of 3 that cuts through groups) exercise the shared-prompt layout.
    whole = _learner(tiny_model, micro_batch_size=8, share_prompts=False, dtype="float32", algorithm={"loss": loss})
    split = _learner(tiny_model, dtype="float32", algorithm={"loss": loss}, **split)
    assert (whole.layout, split.layout) == ("padded", "packed" if "token_budget" in split.trainer_cfg.model_fields_set
                                            else "shared" if split.trainer_cfg.share_prompts else "padded")
    m_whole, m_split = whole.train(_batch(group=2)), split.train(_batch(group=2))
    for (name, a), (_, b) in zip(whole.policy.model.named_parameters(), split.policy.model.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4), name
    assert m_whole["policy_loss"] == pytest.approx(m_split["policy_loss"], abs=1e-6)
    assert m_whole["grad_norm"] == pytest.approx(m_split["grad_norm"], rel=1e-4)


def test_shared_layout_packs_a_groups_short_completions_into_shared_rows(tiny_model: Path) -> None:
    from rl.batching import collate

    a, b = [5, 6, 7, 8, 9], [10, 11, 12]
    lengths = {"a": [6, 2, 3, 1], "b": [6, 6]}
    prompts = [a] * 4 + [b] * 2
    completions = [list(range(20, 20 + n)) for n in lengths["a"] + lengths["b"]]
    batch = TrainBatch(prompts, completions, [[-1.0] * len(c) for c in completions], [0.5] * 6)
    shared = collate(batch, list(range(6)), layout="shared", device=torch.device("cpu"))
    # a: [6] | [3, 2, 1]; b: [6] | [6] -> 4 rows of 6 instead of 6
    assert shared.inputs.input_ids.shape == (4, 6) and sorted(shared.inputs.prefix.row_prefix.tolist()) == [0, 0, 1, 1]
    padded = collate(batch, list(range(6)), layout="padded", device=torch.device("cpu"))
    policy = _learner(tiny_model, dtype="float32").policy
    with torch.no_grad():
        got, want = policy.completion_logits(shared.inputs), policy.completion_logits(padded.inputs)
    mask = shared.loss_mask.bool()
    assert torch.equal(mask, padded.loss_mask.bool())
    assert torch.allclose(got[mask], want[mask], atol=1e-5)


def test_collate_fills_each_layouts_fields_and_the_mismatch_fields_only_when_set() -> None:
    from rl.batching import collate

    prompts, completions = [[5, 6, 7]] * 2 + [[8, 9]], [[20, 21], [22], [23, 24, 25]]
    batch = TrainBatch(prompts, completions, [[-1.0] * len(c) for c in completions], [0.5, -0.5, 1.0],
                       extras={"seq_index": [[i] * len(c) for i, c in enumerate(completions)]})
    cpu = torch.device("cpu")
    shared, padded, packed = (collate(batch, [0, 1, 2], layout=name, device=cpu)
                              for name in ("shared", "padded", "packed"))
    assert shared.inputs.prefix is not None and shared.inputs.prefix.input_ids.shape == (2, 2)
    assert padded.inputs.prefix is None and padded.inputs.position_ids is None
    assert packed.inputs.prefix is None and packed.inputs.input_ids.shape == (1, 14)
    for mb in (shared, padded, packed):
        assert mb.targets.tolist() == [[20, 21, 0], [22, 0, 0], [23, 24, 25]]
        assert mb.loss_mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
        assert mb.advantages[:, 0].tolist() == [0.5, -0.5, 1.0]
        assert mb.sampler_logprobs is None and mb.is_weights is None
        assert mb.extras["seq_index"].dtype == torch.long and mb.extras["seq_index"][:, 0].tolist() == [0, 1, 2]
    corrected = replace(batch, sampler_logprobs=[[-2.0] * len(c) for c in completions],
                        is_weights=[[0.5] * len(c) for c in completions]).select([2, 0])
    mb = collate(corrected, [0, 1], layout="padded", device=cpu)
    assert mb.sampler_logprobs.tolist() == [[-2.0] * 3, [-2.0, -2.0, 0.0]]
    assert mb.is_weights.tolist() == [[0.5] * 3, [0.5, 0.5, 0.0]]


def test_packing_plans_within_the_token_budget() -> None:
    from rl.batching import plan_micro_batches

    lengths = [30, 5, 12, 25, 8, 40, 3]
    plan = plan_micro_batches(lengths, micro_batch_size=2, token_budget=40)
    assert sorted(i for mb in plan for i in mb) == list(range(7))
    assert all(sum(lengths[i] for i in mb) <= 40 for mb in plan)
    # first-fit decreasing: 40 | 30 + 8 | 25 + 12 + 3 | 5 (123 tokens cannot fit 3 bins of 40)
    assert plan == [[5], [0, 4], [3, 2, 6], [1]]
    assert plan_micro_batches(lengths, micro_batch_size=3, token_budget=None) == [[6, 1, 4], [2, 3, 0], [5]]


def test_mini_batches_and_mismatch_correction(tiny_model: Path) -> None:
    """Two mini-batches = two optimizer steps; π_old is recomputed first, so with the learner's own logprobs as
    the sampler's the mismatch is 0 and TIS keeps every token at weight 1."""
    learner = _learner(tiny_model, dtype="float32", mini_batches=2, algorithm={"mismatch": "tis"})
    batch = _batch()
    batch.old_logprobs = learner.logprobs(batch)
    metrics = learner.train(batch)
    assert learner.optimizer.state_dict()["state"][0]["step"] == 2
    assert metrics["mismatch_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["mismatch_kept_frac"] == 1.0 and metrics["mismatch_weight_mean"] == pytest.approx(1.0, abs=1e-5)
    # a sampler far from the learner: TIS truncates at C = 2, the measured mismatch is large
    shifted = _batch()
    shifted.old_logprobs = [[lp - 3.0 for lp in row] for row in learner.logprobs(shifted)]
    metrics = learner.train(shifted)
    assert metrics["mismatch_weight_mean"] == pytest.approx(2.0, abs=1e-4) and metrics["mismatch_kl"] > 1.0


def test_adaptive_entropy_state_is_checkpointed(tiny_model: Path, tmp_path: Path) -> None:
    entropy = {"mode": "adaptive", "coef": 0.01, "target": 100.0, "delta": 0.02}  # far above: α keeps rising
    learner = _learner(tiny_model, algorithm={"entropy": entropy})
    for step in (1, 2, 3):
        metrics = learner.train(_batch(seed=step), step=step)
    assert metrics["entropy_coef"] == pytest.approx(0.05) and metrics["entropy_target"] == 100.0
    learner.save(str(tmp_path / "ckpt"))
    resumed = _learner(tiny_model, algorithm={"entropy": entropy}, resume_from=str(tmp_path / "ckpt"))
    assert resumed.train(_batch(seed=4), step=4)["entropy_coef"] == pytest.approx(0.07)


def test_kl_as_reward_penalty_is_zero_for_the_start_policy(tiny_model: Path) -> None:
    learner = _learner(tiny_model, kl_beta=0.1, dtype="float32", algorithm={"kl_mode": "reward"})
    batch = _batch()
    batch.old_logprobs = learner.logprobs(batch)
    assert max(abs(k) for k in learner.reference_kl(batch)) < 1e-4


def test_kl_to_reference_is_zero_at_start_and_positive_after_moving(tiny_model: Path) -> None:
    learner = _learner(tiny_model, kl_beta=0.1)
    first = learner.train(_batch())
    assert first["kl_ref"] == pytest.approx(0.0, abs=1e-3)  # policy == reference (up to bf16 rounding)
    second = learner.train(_batch(seed=1))
    assert second["kl_ref"] > first["kl_ref"] + 1e-4


def test_lora_trains_only_adapters_and_pushes_merged_weights(tiny_model: Path) -> None:
    learner = _learner(tiny_model, lora=LoraConfig(r=4, alpha=8))
    model = learner.policy.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    learner.train(_batch())
    learner.train(_batch(seed=1))  # B starts at zero, so A gets its first gradient on the second step
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != ("lora_" in name), name
    merged = dict(learner.policy.merged_weights())
    reference = model.merge_and_unload()  # peft's own merge (done last: it consumes the wrapper)
    ref_params = dict(reference.named_parameters())
    assert set(merged) == set(ref_params)
    for name, tensor in merged.items():
        assert torch.allclose(tensor, ref_params[name], atol=1e-6), name


def test_checkpoint_is_an_hf_model_and_resumes_optimizer(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    learner = _learner(tiny_model, max_steps=4, lr_schedule="linear")
    assert learner.train(_batch())["lr"] == pytest.approx(1e-2)
    learner.save(str(tmp_path / "ckpt"))
    loaded = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", dtype=torch.float32).named_parameters())
    # bf16 parameters: the checkpoint holds the float32 master weights, exactly
    masters = dict(zip([n for n, _ in learner.policy.model.named_parameters()], learner.masters.masters))
    for name, p in learner.policy.model.named_parameters():
        assert p.dtype == torch.bfloat16 and torch.equal(loaded[name], masters[name]), name
    resumed = _learner(tiny_model, max_steps=4, lr_schedule="linear", resume_from=str(tmp_path / "ckpt"))
    assert resumed.optimizer.state_dict()["state"].keys() == learner.optimizer.state_dict()["state"].keys()
    assert all(torch.equal(a, b) for a, b in zip(resumed.masters.masters, learner.masters.masters))
    a, b = learner.train(_batch(seed=2)), resumed.train(_batch(seed=2))
    assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-6)
    assert a["lr"] == b["lr"] == pytest.approx(1e-2 * 3 / 4)  # the schedule resumed at its second step


def test_lora_checkpoint_has_merged_model_and_adapter(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    learner = _learner(tiny_model, lora=LoraConfig(r=4, alpha=8))
    learner.train(_batch())
    learner.save(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    loaded = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", dtype=torch.float32).named_parameters())
    with learner.masters.float32_params():  # what was saved: bf16 base + the float32 adapters' delta
        for name, tensor in learner.policy.merged_weights():
            assert torch.allclose(loaded[name], tensor.detach().float(), atol=1e-6), name
    for name, tensor in learner.weights():  # what the engines get: the same in bf16
        assert tensor.dtype == torch.bfloat16 and torch.allclose(loaded[name], tensor.float(), rtol=1e-2, atol=1e-4)


def test_bf16_params_train_float32_masters_like_autocast(tiny_model: Path) -> None:
    # Same start, same batch, one step each with micro-batches of 3 (gradients accumulate over three passes):
    # bf16 parameters with float32 masters and float32 parameters under autocast take the same step up to bf16
    # rounding, the masters hold the update and the bf16 parameters are the masters rounded.
    lr = 1e-3
    bf16 = _learner(tiny_model, lr=lr, micro_batch_size=3)
    auto = _learner(tiny_model, lr=lr, micro_batch_size=3, precision="autocast")
    assert bf16.masters is not None and auto.masters is None
    start = [m.detach().clone() for m in bf16.masters.masters]
    assert all(p.dtype == torch.bfloat16 for p in bf16.policy.model.parameters())
    assert all(p.dtype == torch.float32 for g in bf16.optimizer.param_groups for p in g["params"])
    m_bf16, m_auto = bf16.train(_batch(group=2)), auto.train(_batch(group=2))
    assert m_bf16["policy_loss"] == pytest.approx(m_auto["policy_loss"], rel=0.02)
    assert m_bf16["grad_norm"] == pytest.approx(m_auto["grad_norm"], rel=0.05)
    assert all(p.grad is None for p in bf16.policy.model.parameters())  # moved onto the masters as they came
    step_bf16 = torch.cat([(m - s).flatten() for m, s in zip(bf16.masters.masters, start)])
    step_auto = torch.cat([(p.detach() - s).flatten() for p, s in zip(auto.policy.model.parameters(), start)])
    assert torch.nn.functional.cosine_similarity(step_bf16, step_auto, dim=0) > 0.98
    # AdamW's first step moves every weight by ≈ lr, far below bf16 resolution for most of them: the masters keep it
    assert step_bf16.abs().median() > 0.5 * lr
    for p, m in zip(bf16.policy.model.parameters(), bf16.masters.masters):
        assert torch.equal(p, m.to(torch.bfloat16))


def test_several_updates_per_batch_reuse_the_sampling_logprobs(tiny_model: Path) -> None:
    # μ = 4 updates on one batch: π_old stays the sampling-time logprobs, so the ratio drifts from 1 and
    # clipping engages, while μ = 1 on a fresh learner starts at ratio ≈ 1 with nothing clipped.
    batch, scorer = _batch(), _learner(tiny_model)
    batch.old_logprobs = [scorer.score(p, c) for p, c in zip(batch.prompt_ids, batch.completion_ids)]
    once = _learner(tiny_model).train(batch)
    reused = _learner(tiny_model, updates_per_batch=4, lr=5e-2).train(batch)
    assert once["clip_frac"] < 0.01 and abs(once["ratio_mean"] - 1) < 0.01
    assert reused["clip_frac"] > 0.05


def test_masked_tokens_carry_no_loss_and_no_gradient(tiny_model: Path) -> None:
    # Zeroing a token's mask must give exactly the loss and gradients of a batch in which that token's
    # old logprob and advantage cannot matter: perturbing its old logprob changes nothing.
    batch = _batch()
    masks = [[1] * len(c) for c in batch.completion_ids]
    masks[0][0] = 0  # e.g. inserted stop-thinking text
    batch.loss_masks = masks
    twin = _batch()
    twin.loss_masks = [list(m) for m in masks]
    twin.old_logprobs[0][0] += 5.0  # garbage placeholder on the masked token
    a = _learner(tiny_model, dtype="float32").train(batch)
    b = _learner(tiny_model, dtype="float32").train(twin)
    assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-7)
    assert batch.num_completion_tokens == sum(len(c) for c in batch.completion_ids) - 1


@pytest.mark.parametrize("layout", [{"micro_batch_size": 4}, {"micro_batch_size": 4, "share_prompts": False},
                                    {"token_budget": 40}], ids=["shared", "padded", "packed"])
def test_output_layer_on_loss_tokens_only_matches_the_full_logits(tiny_model: Path, layout: dict) -> None:
    # The default path projects only loss-carrying positions to the vocabulary (no padding, no masked tokens) and
    # scatters log p and H back to [N, T]; with an entropy bonus and a KL term every piece of it gets a gradient.
    # float32, so the two paths must agree to float precision.
    batch = _batch(group=2)
    batch.loss_masks = [[int(j % 3 != 1) for j in range(len(c))] for c in batch.completion_ids]
    algorithm = {"entropy": {"mode": "fixed", "coef": 0.05}}
    sparse = _learner(tiny_model, dtype="float32", kl_beta=0.1, algorithm=algorithm, **layout)
    full = _learner(tiny_model, dtype="float32", kl_beta=0.1, algorithm=algorithm, **layout)
    full.needs_logits = True
    for learner in (sparse, full):  # the same move away from the reference, so the KL term has a gradient
        torch.manual_seed(0)
        with torch.no_grad():
            for p in learner.policy.model.parameters():
                p.add_(torch.randn_like(p), alpha=0.02)
    m_sparse, m_full = sparse.train(batch), full.train(batch)
    for key in ("policy_loss", "entropy", "kl_ref", "grad_norm", "clip_frac"):
        assert m_sparse[key] == pytest.approx(m_full[key], rel=1e-5, abs=1e-7), key
    assert m_sparse["kl_ref"] > 1e-4
    for (name, a), (_, b) in zip(sparse.policy.model.named_parameters(), full.policy.model.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4), name


def test_optimizer_state_allocated_up_front_changes_no_update(tiny_model: Path, monkeypatch) -> None:
    # The learner creates AdamW's moments at start-up (a learning-rate-0 update, step count reset); two real
    # steps must then match an optimizer that creates them lazily, exactly, weight decay included.
    import rl.learner

    eager = _learner(tiny_model, weight_decay=0.1)
    assert all(state["step"].item() == 0 for state in eager.optimizer.state.values())
    monkeypatch.setattr(rl.learner, "_allocate_optimizer_state", lambda optimizer: None)
    lazy = _learner(tiny_model, weight_decay=0.1)
    assert not lazy.optimizer.state
    for _ in range(2):
        eager.train(_batch()), lazy.train(_batch())
    for (name, a), (_, b) in zip(eager.policy.model.named_parameters(), lazy.policy.model.named_parameters()):
        assert torch.equal(a, b), name
    assert all(state["step"].item() == 2 for state in eager.optimizer.state.values())


def test_kl_cov_uses_the_unclipped_surrogate_and_clip_cov_skips_clipped_tokens(tiny_model: Path, monkeypatch) -> None:
    """KL-Cov: the policy term is -ratio·A with no clip (a far-off π_old shows it: PPO would clip every token);
    Clip-Cov: the tokens PPO clips are never drawn."""
    import rl.learner as learner_module

    batch = _batch(group=2)
    far = replace(batch, old_logprobs=[[lp - 2.0 for lp in row] for row in batch.old_logprobs])  # ratio ≈ e^2
    clipped = _learner(tiny_model, dtype="float32", algorithm={"entropy": {"cov": "none"}}).train(far)
    unclipped = _learner(tiny_model, dtype="float32",
                         algorithm={"entropy": {"cov": "kl_cov", "kl_cov_coef": 0.0}}).train(far)
    assert clipped["clip_frac"] > 0.3 and unclipped["clip_frac"] == 0.0
    assert abs(unclipped["policy_loss"]) > 3 * abs(clipped["policy_loss"])

    seen = {}
    real = learner_module.clip_cov_mask

    def spy(*args, exclude=None, **kwargs):
        seen["exclude"] = exclude
        return real(*args, exclude=exclude, **kwargs)

    monkeypatch.setattr(learner_module, "clip_cov_mask", spy)
    _learner(tiny_model, dtype="float32", algorithm={"entropy": {"cov": "clip_cov"}}).train(far)
    assert seen["exclude"] is not None and seen["exclude"].any()  # the tokens PPO clipped are left out
