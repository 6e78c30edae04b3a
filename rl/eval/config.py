"""Configuration of `python -m rl.eval` and `python -m rl.datatools`: pydantic models only (no torch, Ray or vLLM
import, so `--help` is instant). Every field's docstring is its documentation (`--help` prints them).

Shared sections: `model`, `data`, `engine` (an `rl.config.EngineConfig` plus the context length and the seed),
`sampling`, `rewards` (the same entries as a GRPO run's `rewards:`; the *first* one is the primary reward that
decides correctness) and `correct_threshold`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rl.config import EngineConfig, RewardConfig, Strict, ToolUseConfig


class EvalModelConfig(Strict):
    path: str
    """Hub id, local HF directory, checkpoint of a run, or a built-in alias (`smollm2-135m-instruct`)."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Parameter dtype of the engine."""


class PromptDataConfig(Strict):
    path: str
    """Prompts: a .jsonl / .parquet file, a `datasets.save_to_disk` directory, or `hf:NAME[:SPLIT]`. Each row needs
    `prompt` (a string, or chat messages); other columns go to the rewards by name."""
    max_prompts: int | None = Field(None, ge=1)
    """Use only the first this many rows (default: all)."""
    system_prompt: str | None = None
    """System message prepended to prompts that have none."""
    thinking_template: bool = False
    """Install the thinking-fusion chat template (ChatML + think blocks, `rl.chat`) for models without native
    thinking; needed for budget sweeps, the mode check and rejection sampling on such models."""
    max_prompt_tokens: int = Field(1024, ge=1)
    """A rendered prompt longer than this is an error (not silently dropped)."""


class EvalDataConfig(PromptDataConfig):
    think_mode: Literal["off", "think", "no_think"] = "off"
    """Rendering for pass@k and the query filter: `off` = the tokenizer's template as is; `think` / `no_think` =
    Qwen3's modes via `rl.chat.render` (`no_think` pre-fills the empty think block). The budget sweep and the mode
    check pick their modes themselves."""


class EvalEngineConfig(EngineConfig):
    """The engine built in this process (no Ray) by `rl.eval` and the data tools."""

    key_order = ("backend", "max_model_len", "kv_cache_gib", "gpu_memory_utilization", "enforce_eager",
                 "tensor_parallel_size", "seed")

    max_model_len: int | None = Field(None, ge=16)
    """vLLM context length (default: the longest prompt + the longest completion this run can produce; for the mode
    check, `turns` times that)."""
    gpu_memory_utilization: float = Field(0.8, gt=0.0, le=1.0)
    """vLLM on GPU: fraction of GPU memory for the engine."""
    seed: int = 0
    """Engine seed (vLLM's default sampling seed; the HF engine's generator)."""


class SamplingConfig(Strict):
    n: int = Field(1, ge=1)
    """Samples per prompt (pass@k needs n ≥ k; the estimate is unbiased for any n ≥ k)."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature; 0 = greedy (then n > 1 repeats the same answer)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling threshold."""
    max_new_tokens: int = Field(256, ge=1)
    """Maximum completion length (the budget sweep uses its own budgets instead)."""
    seed: int | None = 0
    """Per-request sampling seed (reproducible runs); null = fresh randomness."""


class DataSamplingConfig(SamplingConfig):
    n: int = Field(8, ge=1)
    """Samples per prompt."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature (the data tools need diverse samples)."""


class PassKConfig(Strict):
    k: list[int] = Field(default_factory=lambda: [1], min_length=1)
    """The k of pass@k = 1 − C(n−c, k) / C(n, k) averaged over prompts (n = `sampling.n`, c = correct samples)."""

    @field_validator("k")
    @classmethod
    def _positive(cls, k: list[int]) -> list[int]:
        if any(x < 1 for x in k):
            raise ValueError(f"every k must be >= 1, got {k}")
        return sorted(set(k))


class BudgetSweepConfig(Strict):
    budgets: list[int] = Field(min_length=1)
    """Thinking budgets in tokens (`rl.rollout.budget`); 0 = non-thinking mode (the empty think block pre-filled)."""
    max_answer_tokens: int = Field(64, ge=1)
    """Answer tokens allowed after `</think>` (and for budget 0)."""

    @field_validator("budgets")
    @classmethod
    def _sorted_non_negative(cls, budgets: list[int]) -> list[int]:
        if any(b < 0 for b in budgets):
            raise ValueError(f"budgets must be >= 0 (0 = non-thinking mode), got {budgets}")
        return sorted(set(budgets))


class ModeCheckConfig(Strict):
    dialogues: int = Field(16, ge=1)
    """Multi-turn dialogues to generate (questions taken from the data rows in order, cycling)."""
    turns: int = Field(3, ge=1)
    """User turns per dialogue; each turn carries `/think`, `/no_think` or no flag, drawn uniformly."""
    max_new_tokens: int = Field(64, ge=1)
    """Maximum tokens per assistant turn."""
    seed: int = 0
    """Seed of the flag draws."""


class EvalConfig(Strict):
    output_dir: str
    """Where results go: config.yaml, results.json, samples.jsonl, budget_sweep.{json,csv}, budget_curve.png,
    mode_following.{json,jsonl}."""
    model: EvalModelConfig
    """The model to evaluate."""
    data: EvalDataConfig
    """Evaluation prompts."""
    engine: EvalEngineConfig = EvalEngineConfig()
    """Generation engine."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling for pass@k and the budget sweep (greedy by default)."""
    rewards: list[RewardConfig] = Field(default_factory=list)
    """Rewards / verifiers; the first is the primary one that decides correctness (needed by pass@k and the sweep)."""
    correct_threshold: float = 1.0
    """A sample is correct when its primary reward is ≥ this (1.0 suits 0/1 verifiers; a sample the reward returns
    None for counts as 0)."""
    pass_k: PassKConfig | None = PassKConfig()
    """pass@k under `data.think_mode` with `sampling.max_new_tokens`; null to skip."""
    budget_sweep: BudgetSweepConfig | None = None
    """Accuracy vs thinking budget: a table and budget_curve.png; null to skip."""
    mode_check: ModeCheckConfig | None = None
    """Mode following: fraction of assistant turns that obey the latest `/think` / `/no_think` flag; null to skip."""
    tool_use: ToolUseConfig | None = None
    """pass@k with tools: each sample is a multi-turn trajectory as in a GRPO run with the same `rollout.tools` /
    `environment` keys (the schemas in the prompt, tool turns inserted, rewards given the trajectory's messages and
    the `tool_calls` / `tool_errors` columns); results add `tools/call_rate` etc. Null (default): single-turn."""

    @model_validator(mode="after")
    def _consistent(self) -> EvalConfig:
        if self.pass_k is None and self.budget_sweep is None and self.mode_check is None:
            raise ValueError("nothing to do: set at least one of pass_k, budget_sweep, mode_check")
        if self.tool_use and (self.budget_sweep or self.mode_check):
            raise ValueError("tool_use applies to pass_k only: the budget sweep and the mode check are single-turn "
                             "(run them in a config without tool_use)")
        if (self.pass_k or self.budget_sweep) and not self.rewards:
            raise ValueError("pass_k and budget_sweep need `rewards:` (the first one decides correctness); "
                             "add e.g. `rewards: [{name: math}]`, or set pass_k: null for a mode check only")
        if self.pass_k and max(self.pass_k.k) > self.sampling.n:
            raise ValueError(f"pass_k.k={self.pass_k.k} needs sampling.n >= {max(self.pass_k.k)} "
                             f"(got sampling.n={self.sampling.n})")
        return self


class FilterConfig(Strict):
    """Query filter (Qwen3 reasoning-RL data): keep prompts solved neither N/N nor 0/N."""

    output: str
    """Filtered JSONL (the kept rows plus `pass_rate`); the summary goes next to it as `<stem>.summary.json`."""
    model: EvalModelConfig
    """The model whose pass rate decides (the policy about to be trained)."""
    data: EvalDataConfig
    """Candidate prompts."""
    engine: EvalEngineConfig = EvalEngineConfig()
    """Generation engine."""
    sampling: DataSamplingConfig = DataSamplingConfig()
    """N = `sampling.n` samples per prompt (N ≥ 2)."""
    rewards: list[RewardConfig] = Field(min_length=1)
    """Verifier(s); the first decides correctness."""
    correct_threshold: float = 1.0
    """A sample is correct when its primary reward is ≥ this."""

    @model_validator(mode="after")
    def _enough_samples(self) -> FilterConfig:
        if self.sampling.n < 2:
            raise ValueError(f"sampling.n={self.sampling.n}: the filter needs N >= 2 samples per prompt")
        if self.sampling.temperature == 0.0:
            raise ValueError("sampling.temperature=0 gives N identical samples: use a sampling temperature (e.g. 1.0)")
        return self


class RejectionConfig(Strict):
    """Rejection sampling for SFT: keep only verified responses, thinking and non-thinking mixed."""

    output: str
    """SFT JSONL: `{"messages": [...prompt..., {"role": "assistant", "content": ...}], "mode", "reward"}` per row;
    the summary goes next to it as `<stem>.summary.json`."""
    model: EvalModelConfig
    """The model that writes the responses (the teacher)."""
    data: PromptDataConfig
    """Prompts (with the columns the rewards need)."""
    engine: EvalEngineConfig = EvalEngineConfig()
    """Generation engine."""
    sampling: DataSamplingConfig = DataSamplingConfig()
    """Candidates per prompt and their length."""
    rewards: list[RewardConfig] = Field(min_length=1)
    """Verifier(s); the first decides which responses are kept."""
    correct_threshold: float = 1.0
    """A response is kept when its primary reward is ≥ this."""
    think_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Probability that a prompt is sampled in thinking mode (`/think`); the rest use `/no_think` (seeded per row)."""
    max_per_prompt: int = Field(1, ge=1)
    """Verified responses kept per prompt (distinct texts, in sampling order)."""
    require_finished: bool = True
    """Drop responses cut at `sampling.max_new_tokens` (they never reached their end)."""
    seed: int = 0
    """Seed of the per-row mode draws."""
