"""Configuration of distillation runs: pydantic models only (no torch, Ray or vLLM import; `--help` is instant).

On-policy (`OnPolicyConfig`) is a `rl.config.RunConfig` like GRPO's: `student` is a `model` section, `data`,
`rollout`, `trainer`, `algorithm` (the policy-gradient loss that carries `sampled_kl` and task rewards),
`rewards` and `eval` mean exactly what they mean for `rl.grpo`, and the keys it does not implement
(`NOT_IMPLEMENTED`) are errors naming them. New: `teacher` and `loss` (a tagged union on `loss.type`).
Off-policy (`OffPolicyConfig`): a teacher generation stage (its engine an `rl.config.EngineConfig`) and a TRL
SFT stage.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from rl.config import (
    AlgorithmConfig,
    DataConfig,
    EngineConfig,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
    RunConfig,
    Strict,
)


class TeacherConfig(Strict):
    path: str
    """Hub id, local HF directory, checkpoint written by `rl.grpo` / `distill.*`, or a built-in alias. Its
    tokenizer must be the student's (checked before anything loads)."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Teacher weights and forward pass dtype."""
    micro_batch_size: int = Field(16, ge=1)
    """Sequences per teacher forward pass when scoring."""
    share_prompts: bool = True
    """Run each distinct prompt of a scoring micro-batch through the teacher once (as `trainer.share_prompts`
    does for the learner: a step holds each prompt `rollout.n` times); false = one padded row per sequence."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of the teacher actor (default: every core this process may run on)."""


class _LossBase(Strict):
    kl_coef: float = Field(1.0, ge=0.0)
    """Weight of the distillation term."""
    reward_weight: float = Field(0.0, ge=0.0)
    """Weight of the task-reward policy-gradient term (GRPO advantages from `rewards`); 0 = pure distillation
    (rewards, if any, are then only measured)."""


class SampledKL(_LossBase):
    """Per-token reverse KL of the sampled token as the advantage: A_t = −kl_coef·(log S(x_t) − log T(x_t))
    (+ reward_weight · GRPO advantage), optimised by `algorithm.loss` (PPO-clip). The teacher sends one number
    per token."""

    type: Literal["sampled_kl"] = "sampled_kl"
    top_k: int = Field(1, ge=1)
    """Teacher top-k tokens sent per position; only used for the top-1 agreement metric here."""


class FullKL(_LossBase):
    """KL(student‖teacher) over the vocabulary at every sampled position (reverse KL, mode-seeking)."""

    type: Literal["full_kl"]
    top_k: int | None = Field(32, ge=1)
    """Teacher's top-k tokens + one tail bucket (K+1 numbers per position); null = the full vocabulary
    (V floats per position go from the teacher to the learner)."""


class GKD(_LossBase):
    """Generalized JSD_β (GKD, arXiv 2306.13649) over the vocabulary; each step is on-policy (student samples)
    with probability `on_policy_fraction`, else trained on teacher samples."""

    type: Literal["gkd"]
    beta: float = Field(0.5, ge=0.0, le=1.0)
    """β of JSD_β: 0 = forward KL(teacher‖student), 1 = reverse KL(student‖teacher)."""
    on_policy_fraction: float = Field(1.0, ge=0.0, le=1.0)
    """λ: probability that a step trains on the student's own samples (else the teacher generates them)."""
    top_k: int | None = Field(32, ge=1)
    """As for `full_kl`: top-k + tail bucket, or null for the full vocabulary."""


DistillLoss = Annotated[SampledKL | FullKL | GKD, Field(discriminator="type")]


NOT_IMPLEMENTED: dict[str, str] = {
    "rollout.max_staleness": "distillation steps are synchronous: the teacher scores what the current student "
                             "just sampled",
    "algorithm.dynamic_sampling": "every prompt group carries the teacher's signal; none is dropped",
    "algorithm.dynamic_sampling_rounds": "it belongs to algorithm.dynamic_sampling, which distillation does not do",
    "algorithm.mask_truncated": "the teacher's per-token signal is as valid on a cut completion as on a finished one",
    "algorithm.kl_mode": "the KL to the start model can only be a loss term here (kl_mode: loss)",
    "rollout.tools": "the teacher would have to score tool turns it never saw; multi-turn tool use is GRPO's (rl.grpo)",
    "rollout.environment": "as rollout.tools: environments are GRPO's (rl.grpo)",
}
"""`RunConfig` keys that `distill.onpolicy` does not implement → why; setting one to other than its default is an
error naming it (rather than a key silently ignored)."""


class OnPolicyConfig(RunConfig):
    key_order = ("output_dir", "student", "teacher", "data", "rollout", "trainer", "loss", "algorithm", "rewards",
                 "eval", "tensorboard", "verbose", "cluster", "ray_address")

    student: ModelConfig
    """The model being trained (same keys as `rl.grpo`'s `model`)."""
    teacher: TeacherConfig
    """The frozen model whose distribution the student learns."""
    data: DataConfig
    """Training prompts (chat mode: `data.think_mode`)."""
    rollout: RolloutConfig = RolloutConfig()
    """Student sampling (vLLM or HF rollout workers)."""
    loss: DistillLoss = SampledKL()
    """Distillation loss, by `type`: sampled_kl | full_kl | gkd."""
    algorithm: AlgorithmConfig = AlgorithmConfig()
    """Policy-gradient settings (clip range, KL to the start model) for `sampled_kl` and the task-reward term."""
    rewards: list[RewardConfig] = Field(default_factory=list)
    """Task rewards: measured every step (`reward_mean`), trained on when `loss.reward_weight` > 0."""

    @model_validator(mode="after")
    def _implemented(self) -> OnPolicyConfig:
        for key, why in NOT_IMPLEMENTED.items():
            section, name = key.split(".")
            owner = getattr(self, section)
            value, default = getattr(owner, name), type(owner).model_fields[name].get_default(call_default_factory=True)
            if value != default:
                raise ValueError(f"{key}={value!r} is not implemented by distill.onpolicy ({why}); remove it "
                                 f"(default {default!r})")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> OnPolicyConfig:
        if self.loss.reward_weight > 0 and not self.rewards:
            raise ValueError(f"loss.reward_weight={self.loss.reward_weight} needs at least one entry in `rewards`")
        if self.loss.kl_coef == 0 and self.loss.reward_weight == 0:
            raise ValueError("loss.kl_coef and loss.reward_weight are both 0: nothing to train on")
        return self


class GenerateConfig(EngineConfig):
    key_order = ("backend", "n", "max_prompts", "max_new_tokens", "temperature", "top_p", "keep_truncated",
                 "min_reward", "kv_cache_gib", "gpu_memory_utilization", "enforce_eager", "tensor_parallel_size", "dtype",
                 "seed")

    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Dtype of the teacher's weights in the engine."""
    n: int = Field(1, ge=1)
    """Responses sampled per prompt."""
    max_prompts: int | None = Field(None, ge=1)
    """Answer only the first this many prompts of `data.train` (default: all)."""
    max_new_tokens: int = Field(256, ge=1)
    """Maximum response length in tokens (responses that hit it are dropped unless `keep_truncated`)."""
    temperature: float = Field(0.7, ge=0.0)
    """Sampling temperature (0 = greedy)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling threshold."""
    keep_truncated: bool = False
    """Keep responses cut at `max_new_tokens` (they end mid-sentence and teach the student not to stop)."""
    min_reward: float | None = None
    """Keep only responses whose weighted reward (the `rewards` section) is at least this; null = keep all."""
    seed: int = 0
    """Sampling seed."""


class SFTConfig(Strict):
    data: str | None = None
    """SFT JSONL (`{"messages": [..., {"role": "assistant", "content": ...}]}` per row) to train on; default:
    the file the generation stage wrote (`output_dir/sft.jsonl`). Any such file works (e.g. a long-CoT cold start)."""
    epochs: float = Field(1.0, gt=0.0)
    """Passes over the data."""
    lr: float = Field(2e-5, gt=0.0)
    """AdamW learning rate (linear decay)."""
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the steps spent warming the learning rate up (linear, from 0)."""
    batch_size: int = Field(8, ge=1)
    """Sequences per optimizer step (per device)."""
    max_length: int = Field(1024, ge=8)
    """Sequences are truncated to this many tokens."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Compute dtype (float32 master weights, bf16 autocast)."""
    seed: int = 0
    """Seed of data order and initialisation."""


class OffPolicyConfig(Strict):
    output_dir: str
    """Run directory: `sft.jsonl` (generated), `model/` (the fine-tuned student), `sft_log.jsonl`, `config.yaml`."""
    student: str
    """The student to fine-tune: hub id, local directory, checkpoint or alias."""
    teacher: str | None = None
    """The teacher that generates responses (needed by the generation stage); must share the student's tokenizer."""
    data: DataConfig | None = None
    """Prompts for the teacher (`data.think_mode: mixed` + `think_prob` sets the /think vs /no_think mix;
    `prompts_per_step` is not used). Needed by the generation stage."""
    generate: GenerateConfig = GenerateConfig()
    """How the teacher generates."""
    rewards: list[RewardConfig] = Field(default_factory=list)
    """Rewards / verifiers scoring the teacher's responses (for `generate.min_reward` and the logged pass rate)."""
    sft: SFTConfig = SFTConfig()
    """Fine-tuning the student on the SFT JSONL."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of the transformers generation and of SFT (default: all cores)."""

    @model_validator(mode="after")
    def _consistent(self) -> OffPolicyConfig:
        if self.generate.min_reward is not None and not self.rewards:
            raise ValueError(f"generate.min_reward={self.generate.min_reward} needs at least one entry in `rewards`")
        return self

