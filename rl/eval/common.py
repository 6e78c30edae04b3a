"""What `rl.eval` and the data tools share: inputs checked before any model loads (rows, rewards, tokenizer,
context length), the engine built in this process, and grading sampled groups with the rewards."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rl.config import RewardConfig, ToolUseConfig
from rl.config_io import ConfigError
from rl.data import load_rows
from rl.eval.config import EvalEngineConfig, EvalModelConfig, PromptDataConfig, SamplingConfig
from rl.models import check_model_path, resolve_model_path


@dataclass
class Inputs:
    """Rows and rewards, validated; the tokenizer with the chat template the run uses."""

    rows: list[dict]
    rewards: Any  # rewards.WeightedRewards; its `primary` reward decides correctness
    tokenizer: Any = None
    model_path: str = ""
    tool_use: Any = None  # rl.rollout.multiturn.ToolUse: samples are multi-turn trajectories


def load_inputs(model: EvalModelConfig, data: PromptDataConfig, rewards: list[RewardConfig],
                tool_use: ToolUseConfig | None = None) -> Inputs:
    """Model path, data rows (first `data.max_prompts`), reward functions and the columns they read, the tools
    (`rl.eval`'s `tool_use`; an environment's `get_reward` joins the rewards, after the primary one)."""
    from rewards import from_config
    from rl.rollout.multiturn import ToolUse

    check_model_path(model.path)
    rows = load_rows(data.path)[: data.max_prompts]
    tools = ToolUse.load(tool_use, key="tool_use")
    extra = [tools.environment_reward()] if tools and tools.has_environment_reward else []
    return Inputs(rows, from_config(rewards, [rows], extra=extra), tool_use=tools)


def load_tokenizer(inputs: Inputs, model: EvalModelConfig, data: PromptDataConfig, *, modes: bool = False,
                   budget: bool = False) -> None:
    """Load the tokenizer into `inputs` (thinking-fusion template if `data.thinking_template`). `modes`: the
    template must have Qwen3's modes; `budget`: `</think>` must be one token. ValueError naming the fix."""
    from transformers import AutoTokenizer

    from rl.chat import chat_style, use_thinking_template

    inputs.model_path = resolve_model_path(model.path)
    tokenizer = AutoTokenizer.from_pretrained(inputs.model_path)
    if data.thinking_template:
        use_thinking_template(tokenizer)
    if modes or budget:
        try:
            chat_style(tokenizer)
        except ValueError as e:
            raise ConfigError(f"{e} (set data.thinking_template: true)") from None
    if budget:
        from rl.rollout.budget import thinking_budget_for

        try:
            thinking_budget_for(tokenizer, 1, 1)
        except ValueError as e:
            raise ConfigError(f"budget_sweep: {e} (`python -m rl.think_tokens SRC OUT` does it)") from None
    inputs.tokenizer = tokenizer


def check_context(engine: EvalEngineConfig, needed: int) -> int:
    """The engine's context length: `engine.max_model_len`, which must hold `needed` tokens, or `needed`."""
    if engine.max_model_len is None:
        return needed
    if engine.max_model_len < needed:
        raise ConfigError(f"engine.max_model_len={engine.max_model_len} is shorter than the longest prompt + "
                          f"completion of this run ({needed} tokens): raise it or leave it unset")
    return engine.max_model_len


def build_engine(model_path: str, model: EvalModelConfig, engine: EvalEngineConfig, max_model_len: int) -> Any:
    """A rollout engine (`rl.rollout.make_engine`) in this process."""
    from rl.rollout import engine_kwargs, make_engine

    return make_engine(engine.backend, **engine_kwargs(engine, model_path=model_path, dtype=model.dtype,
                                                       seed=engine.seed, max_model_len=max_model_len))


def sampling_spec(sampling: SamplingConfig, **changes: Any) -> Any:
    """The engine's `SamplingSpec` for a `sampling:` section, with `changes` applied."""
    from rl.rollout import SamplingSpec

    spec = SamplingSpec(n=sampling.n, max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                        top_p=sampling.top_p, seed=sampling.seed)
    return replace(spec, **changes)


@dataclass
class Graded:
    """Sampled groups scored, `[prompt][sample]`: every reward's own value by label (None counted as 0.0) and
    the decoded completions."""

    values: dict[str, list[list[float]]]
    texts: list[list[str]]


def grade_groups(inputs: Inputs, rendered: list[str], groups: list[list], max_completion_tokens: int) -> Graded:
    """Score completion group i (sampled from prompt `rendered[i]` of row i) with every reward, as a training
    run scores its rollouts (`WeightedRewards.score_rows`; multi-turn trajectories as `rl.rollout.multiturn`
    hands them to the rewards)."""
    from rl.rollout.multiturn import reward_inputs

    owner = [i for i, group in enumerate(groups) for _ in group]
    flat = [c for g in groups for c in g]
    scores = inputs.rewards.score_rows([inputs.rows[i] for i in owner], [c.token_ids for c in flat],
                                       inputs.tokenizer, rendered_prompts=[rendered[i] for i in owner], step=-1,
                                       max_completion_tokens=max_completion_tokens,
                                       **(reward_inputs(flat) if inputs.tool_use else {}))
    values = {label: _regroup([0.0 if v is None else v for v in flat], groups) for label, flat in scores.values.items()}
    return Graded(values, _regroup(scores.texts, groups))


def _regroup(flat: list, groups: list[list]) -> list[list]:
    it = iter(flat)
    return [[next(it) for _ in group] for group in groups]


def mean(values: list) -> float:
    """The mean, NaN for no values."""
    return sum(values) / len(values) if values else float("nan")


def check_summary(cfg: Any, prepared: Any) -> str:
    """What `--check` reports for `rl.eval` and the data tools: prompts, rewards, model."""
    return f"{len(prepared.inputs.rows)} prompts, {len(cfg.rewards)} reward(s), model {cfg.model.path}"
