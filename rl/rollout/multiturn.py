"""Multi-turn rollout with tool calls: the policy writes a call, sees the tool's answer, and goes on.

Works over any `generate(prompts, spec)` (an engine, the Ray `RolloutGroup`, or the thinking budget's
`generate_with_budget` bound to one: the budget then applies to every turn). Formula-free; the rules:

- Turn 1 samples `spec.n` completions per prompt. Every later turn is one request per still-active trajectory
  (n=1) whose prompt is the prompt + everything so far, as token ids: what the model sampled is never
  re-tokenised (vLLM's prefix cache makes the shared part free).
- A turn that ends (EOS) with one or more `<tool_call>{"name": ..., "arguments": ...}</tool_call>` blocks is
  parsed (`rl.tools.parse_tool_calls`; a malformed call becomes an error response, not a crash), every call of
  the whole batch runs concurrently (`rl.tools.ToolRunner`: time-limited, an exception or a timeout becomes the
  response), and the chat template's `tool` turn with the responses plus the next generation prompt
  (`ToolTurns.ids`) is appended with logprob 0.0 and loss mask 0: the policy gradient never pushes on tokens it
  did not sample.
- A trajectory ends at a turn without a tool call (its final answer), at `max_turns` model turns, when its
  sampled tokens reach `max_new_tokens` (all turns together; finish reason `length`), or when a turn was cut
  at its length limit.

Output per trajectory (`Trajectory`, a `Completion`): every token after the prompt, the sampler's logprobs
aligned with them, `loss_mask` (1 exactly on sampled tokens), and the turn / tool-call / error counts and the
trajectory as TRL-style chat messages (`messages`: assistant turns with `tool_calls`, `tool` responses, the
final assistant answer last) for the rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rl.rollout.base import Completion, SamplingSpec


class Generator(Protocol):
    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]: ...


@dataclass
class Trajectory(Completion):
    """A multi-turn completion. `loss_mask` is always set (0 on inserted tool turns)."""

    turns: int = 1
    tool_calls: int = 0
    tool_errors: int = 0
    tool_time_s: float = 0.0
    messages: list[dict] = field(default_factory=list)
    budget_hit: bool = False
    prompt_ids: list[int] | None = None  # the prompt it continued (set by `ToolUse.sample`)
    environment: Any = None  # its environment instance, if the run has one


class ToolTurns:
    """The token ids the chat template puts after an assistant turn that called tools: the `tool` messages
    (each response cut to fit `max_tokens` for the whole turn) and the next assistant generation prompt.

    Rendered by the tokenizer's own chat template (`apply_chat_template` with `tools`), so it is exact for any
    template that renders `tool` messages (Qwen3's, the thinking-fusion one, Hermes-style ones): the text after a
    placeholder assistant turn, minus the end-of-turn text the model sampled itself."""

    _PLACEHOLDER = "\x00rl-multiturn-placeholder\x00"

    def __init__(self, tokenizer: Any, tools: list[dict], *, max_tokens: int, enable_thinking: bool | None = None):
        self.tokenizer, self.tools, self.max_tokens = tokenizer, tools, max_tokens
        self.enable_thinking = enable_thinking
        self.end_of_turn_id = tokenizer.eos_token_id
        self.end_of_turn_text = tokenizer.decode([self.end_of_turn_id])
        empty = self.text([])
        if not empty.startswith(self.end_of_turn_text):
            raise ValueError("the chat template does not end an assistant turn with the tokenizer's EOS token "
                             f"({self.end_of_turn_text!r}); multi-turn tool use needs it to")

    def text(self, contents: list[tuple[str, str]]) -> str:
        """Template text from the end of the assistant's turn to the next turn's first sampled token, for the
        `(tool name, response)` pairs."""
        base = [{"role": "user", "content": "q"}, {"role": "assistant", "content": self._PLACEHOLDER}]
        tools = [{"role": "tool", "name": name, "content": content} for name, content in contents]
        kwargs = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
        full = self.tokenizer.apply_chat_template(base + tools, tools=self.tools or None, tokenize=False,
                                                  add_generation_prompt=True, **kwargs)
        return full[full.index(self._PLACEHOLDER) + len(self._PLACEHOLDER):]

    def ids(self, contents: list[tuple[str, str]], *, model_closed_turn: bool) -> list[int]:
        """Token ids to insert; without the end-of-turn token when the model sampled it (`model_closed_turn`).
        Responses share what `max_tokens` leaves after the template's own tokens; a longer one is cut, with a
        `[truncated]` note."""
        def encode(pairs: list[tuple[str, str]]) -> list[int]:
            text = self.text(pairs)
            return self.tokenizer.encode(text[len(self.end_of_turn_text):] if model_closed_turn else text,
                                         add_special_tokens=False)

        ids = encode(contents)
        if len(ids) <= self.max_tokens:
            return ids
        note = " [truncated]"
        share = (self.max_tokens - len(encode([(name, note) for name, _ in contents]))) // max(len(contents), 1)
        cut = [(name, self.tokenizer.decode(self.tokenizer.encode(content, add_special_tokens=False)[:max(share, 0)])
                + note) for name, content in contents]
        return encode(cut)[: self.max_tokens]


@dataclass
class _Active:
    """A trajectory in progress."""

    group: int
    prompt: list[int]
    out: Trajectory
    env: Any = None
    sampled: int = 0  # model tokens so far


def generate_multiturn(
    generate: Callable[[list[list[int]], SamplingSpec], list[list[Completion]]],
    prompts: list[list[int]],
    spec: SamplingSpec,
    *,
    decode: Callable[[list[int]], str],
    turns: ToolTurns,
    runner: Any,
    max_turns: int,
    environments: list[list[Any]] | None = None,
) -> list[list[Trajectory]]:
    """For each prompt (token ids), `spec.n` trajectories of at most `max_turns` model turns and
    `spec.max_new_tokens` sampled tokens in all (see the module docstring). `decode(ids)` is the tokenizer's
    decode without special tokens; `runner.run([(ToolCall, env | None)]) -> [ToolResult]` executes a batch of
    calls; `environments[p][k]`: the environment instance of prompt p's k-th sample (its tool methods are the
    calls' targets), or None. Returns `[len(prompts)][spec.n]` in prompt order."""
    first = generate(prompts, spec)
    active = [_Active(g, prompts[g], Trajectory([], [], "stop", [], turns=0),
                      environments[g][k] if environments else None)
              for g, group in enumerate(first) for k in range(len(group))]
    results: list[list[Trajectory]] = [[a.out for a in active if a.group == g] for g in range(len(prompts))]
    pending = [(a, c) for a, c in zip(active, (c for group in first for c in group))]
    for turn in range(1, max_turns + 1):
        calling = [(a, calls) for a, c in pending if (calls := _add_turn(a, c, decode, spec, turn, max_turns))]
        if not calling:
            break
        _answer_calls(calling, runner, turns)
        room = [(a, spec.max_new_tokens - a.sampled) for a, _ in calling]
        for a, left in room:
            if left <= 0:
                a.out.finish_reason = "length"
        go = [(a, left) for a, left in room if left > 0]
        if not go:
            break
        # one request for all: sampled up to the largest remaining budget, each cut to its own (a prefix of a
        # sample is still a sample of the policy)
        outs = generate([a.prompt + a.out.token_ids for a, _ in go],
                        replace(spec, n=1, max_new_tokens=max(left for _, left in go),
                                seed=None if spec.seed is None else spec.seed + turn))
        pending = [(a, _cut(out[0], left)) for (a, left), out in zip(go, outs)]
    return results


def _cut(c: Completion, left: int) -> Completion:
    """A continuation sampled with a shared token limit, cut to this trajectory's own remaining budget."""
    if len(c.token_ids) <= left:
        return c
    mask = c.loss_mask[:left] if c.loss_mask is not None else None
    return replace(c, token_ids=c.token_ids[:left], logprobs=c.logprobs[:left], finish_reason="length",
                   loss_mask=mask)


def _add_turn(a: _Active, c: Completion, decode: Callable[[list[int]], str], spec: SamplingSpec, turn: int,
              max_turns: int) -> list:
    """Append a sampled turn to its trajectory; the parsed tool calls it makes, or [] when the trajectory ends
    here (no call, cut at the length limit, out of turns or tokens)."""
    from rl.tools import parse_tool_calls

    out = a.out
    mask = c.loss_mask if c.loss_mask is not None else [1] * len(c.token_ids)
    out.token_ids += c.token_ids
    out.logprobs += c.logprobs
    out.loss_mask += mask
    out.finish_reason = c.finish_reason
    out.turns = turn
    out.budget_hit = out.budget_hit or getattr(c, "budget_hit", False)
    a.sampled += sum(mask)
    text = decode(c.token_ids)
    calls = parse_tool_calls(text) if c.finish_reason == "stop" else []
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                                 for call in calls]
    out.messages.append(message)
    if not calls or turn == max_turns or a.sampled >= spec.max_new_tokens:
        if calls and a.sampled >= spec.max_new_tokens:
            out.finish_reason = "length"
        return []
    return calls


def _answer_calls(calling: list[tuple[_Active, list]], runner: Any, turns: ToolTurns) -> None:
    """Run every call of the batch at once; append each trajectory's tool turn (mask 0) and `tool` messages."""
    jobs = [(call, a.env) for a, calls in calling for call in calls]
    results = iter(runner.run(jobs))
    for a, calls in calling:
        answered = [(call, next(results)) for call in calls]
        contents = [(call.name or "", r.content) for call, r in answered]
        closed = bool(a.out.token_ids) and a.out.token_ids[-1] == turns.end_of_turn_id
        inserted = turns.ids(contents, model_closed_turn=closed)
        a.out.token_ids += inserted
        a.out.logprobs += [0.0] * len(inserted)
        a.out.loss_mask += [0] * len(inserted)
        a.out.tool_calls += len(calls)
        a.out.tool_errors += sum(r.error for _, r in answered)
        a.out.tool_time_s += sum(r.time_s for _, r in answered)
        a.out.messages += [{"role": "tool", "name": call.name or "", "content": r.content} for call, r in answered]


def reward_inputs(trajectories: list) -> dict[str, Any]:
    """What the rewards get for multi-turn samples (`WeightedRewards.score_rows` keywords), TRL's convention: as
    `completions` each trajectory's messages with the final answer last, and the columns `tool_calls`,
    `tool_errors` and `environments` (each trajectory's environment instance, or None)."""
    return {"completions": [t.messages for t in trajectories],
            "columns": {"tool_calls": [t.tool_calls for t in trajectories],
                        "tool_errors": [t.tool_errors for t in trajectories],
                        "environments": [t.environment for t in trajectories]}}


def tool_metrics(trajectories: list) -> dict[str, float]:
    """Multi-turn rollouts: model turns, tool calls and tool seconds per trajectory, the share of calls that got
    an error response (unknown tool, bad arguments, exception, timeout), and of trajectories that called a tool."""
    count = len(trajectories)
    calls = sum(t.tool_calls for t in trajectories)
    return {"tools/turns_mean": sum(t.turns for t in trajectories) / count, "tools/calls_mean": calls / count,
            "tools/call_rate": sum(t.tool_calls > 0 for t in trajectories) / count,
            "tools/error_rate": sum(t.tool_errors for t in trajectories) / calls if calls else 0.0,
            "tools/time_s_mean": sum(t.tool_time_s for t in trajectories) / count}


class ToolUse:
    """A run's tools (`rollout.tools`, `rollout.environment`): their schemas for the prompts, the runner, and the
    multi-turn sampling of a batch of rows. Built at pre-flight (`load`: bad specs fail before any model loads),
    then bound to the tokenizer (`bind`)."""

    def __init__(self, functions: list[Callable], environment: Callable[[], Any] | None, *, max_turns: int,
                 max_tool_tokens: int, timeout_s: float, workers: int):
        from rl.tools import ToolRunner, environment_tools, tool_schemas

        self.functions, self.environment = functions, environment
        self.max_turns, self.max_tool_tokens = max_turns, max_tool_tokens
        sample_env = environment() if environment else None  # a factory's class is known by what it builds
        self.environment_class = type(sample_env) if sample_env is not None else None
        env_methods = environment_tools(sample_env) if sample_env is not None else []
        self.schemas = tool_schemas([*functions, *env_methods])
        names = [s["function"]["name"] for s in self.schemas]
        if len(set(names)) < len(names):
            raise ValueError(f"rollout.tools / rollout.environment: two tools are named alike ({names})")
        self.runner = ToolRunner(functions, timeout_s=timeout_s, max_workers=workers)
        self.turns: ToolTurns | None = None
        self.decode: Callable[[list[int]], str] | None = None

    @classmethod
    def load(cls, section: Any, key: str = "rollout") -> ToolUse | None:
        """From a `rl.config.ToolUseConfig` (a run's `rollout` section, `rl.eval`'s `tool_use`; `key` names it in
        errors); None when it has no tools and no environment. ValueError naming the key otherwise."""
        if section is None or (not section.tools and not section.environment):
            return None
        from rl.tools import load_environment, load_tools

        try:
            functions = load_tools(section.tools)
        except ValueError as e:
            raise ValueError(f"{key}.tools: {e}") from None
        try:
            environment = load_environment(section.environment) if section.environment else None
        except ValueError as e:
            raise ValueError(f"{key}.environment: {e}") from None
        return cls(functions, environment, max_turns=section.max_turns, max_tool_tokens=section.max_tool_tokens,
                   timeout_s=section.tool_timeout_s, workers=section.tool_workers)

    @property
    def has_environment_reward(self) -> bool:
        """The environment (a class, or a factory: judged by the class of what it builds) has `get_reward`."""
        return callable(getattr(self.environment_class, "get_reward", None))

    def environment_reward(self) -> Any:
        """The environment's `get_reward()` as a reward of weight 1 labelled with its class name (as TRL does);
        it reads the `environments` column."""
        from rewards import Failed, RewardSpec

        runner = self.runner

        def get_reward(prompts: list, completions: list, environments: list, **_: Any) -> list:
            # an instance whose tool call overran may still be changing its state in a thread: not graded
            return [None if env is None else Failed("a tool call on this environment timed out")
                    if runner.is_broken(env) else env.get_reward() for env in environments]

        return RewardSpec(self.environment_class.__name__, get_reward)

    def bind(self, tokenizer: Any, *, enable_thinking: bool | None = None) -> None:
        """Render tool turns with `tokenizer`'s chat template (ValueError if it cannot)."""
        self.turns = ToolTurns(tokenizer, self.schemas, max_tokens=self.max_tool_tokens,
                               enable_thinking=enable_thinking)
        self.decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)

    def max_completion_tokens(self, max_sampled: int) -> int:
        """Longest trajectory: `max_sampled` model tokens plus a full tool turn between every two model turns."""
        return max_sampled + (self.max_turns - 1) * self.max_tool_tokens

    def sample(self, generate: Callable, prompt_ids: list[list[int]], spec: SamplingSpec,
               rows: list[dict] | None = None, render: Callable[[dict, str], list[int]] | None = None,
               ) -> list[list[Trajectory]]:
        """`spec.n` trajectories per prompt. With an environment, each trajectory gets an instance of its own,
        `reset(**row)`; a returned observation is appended to the row's last user message (`render(row, obs)`:
        that prompt's token ids), so trajectories of one group may start from different prompts."""
        assert self.turns is not None and self.decode is not None, "ToolUse.bind first"
        envs = None
        prompts, n = prompt_ids, spec.n
        if self.environment is not None:
            assert rows is not None and render is not None
            envs = [[self.environment() for _ in range(n)] for _ in rows]
            observations = [[env.reset(**row) for env in group] for row, group in zip(rows, envs)]
            if any(obs for group in observations for obs in group):
                prompts = [render(row, obs) if obs else ids for row, ids, group in zip(rows, prompt_ids, observations)
                           for obs in group]
                envs, spec = [[env] for group in envs for env in group], replace(spec, n=1)
        groups = generate_multiturn(generate, prompts, spec, decode=self.decode, turns=self.turns,
                                    runner=self.runner, max_turns=self.max_turns, environments=envs)
        flat = []
        for g, (group, prompt) in enumerate(zip(groups, prompts)):
            for k, t in enumerate(group):
                t.prompt_ids, t.environment = prompt, envs[g][k] if envs else None
                flat.append(t)
        return [flat[i:i + n] for i in range(0, len(flat), n)]

    def close(self) -> None:
        self.runner.close()
