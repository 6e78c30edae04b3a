"""Multi-turn tool use on the real vLLM engine (rl/rollout/multiturn.py).

A scripted policy: a tiny random Qwen3 trained (in the fixture, a few seconds) until it reproduces, greedily, a
handful of tool-calling conversations token for token. Each conversation's tool turn is what our own tools
answered when the fixture ran them, so at rollout time the model continues exactly as scripted only if the
rollout put the tools' real answers into its context, as the chat template renders them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("vllm")

TESTS = Path(__file__).parent
TOOLS = ["calculator", f"{TESTS / 'tool_fns.py'}:explode", f"{TESTS / 'tool_fns.py'}:sleepy"]
ENVIRONMENT = f"{TESTS / 'tool_fns.py'}:CounterEnv"
TIMEOUT_S = 1.5


def _call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


# user prompt → (first assistant turn, final answer, what the tool turn must say)
SCRIPTS = {
    "Compute 123 times 45.": (_call("calculator", '{"expression": "123*45"}'), "It is \\boxed{5535}.", "5535"),
    "Bad call.": ('<tool_call>\n{"name": "calculator", "arguments": {"expression": }\n</tool_call>', "Sorry.", None),
    "Unknown tool.": (_call("weather", "{}"), "Sorry.", "weather"),
    "Failing tool.": (_call("explode", '{"reason": "test"}'), "Sorry.", "boom: test"),
    "Slow tool.": (_call("sleepy", '{"seconds": 60}'), "Sorry.", None),
}
ENV_SCRIPT = ("Count up.", _call("increment", '{"by": 2}'), "Done.")


def _tool_use(*, environment: str | None = None):
    from rl.config import RolloutConfig
    from rl.rollout.multiturn import ToolUse

    rollout = RolloutConfig(tools=[] if environment else TOOLS, environment=environment, max_turns=3,
                            max_tool_tokens=160, tool_timeout_s=TIMEOUT_S, tool_workers=4)
    return ToolUse.load(rollout)


def _prompt_ids(tokenizer, content: str, observation: str | None = None) -> list[int]:
    """The scripted prompts leave the tool schemas out (~1,000 tokens with the tiny tokenizer, which would make
    the fixture's training 30x slower): the loop does not read the prompt, and the tool turns it inserts render
    the same with or without them (the schemas live in the system turn, before them)."""
    from rl.data import with_observation

    messages = with_observation(content, observation) if observation else [{"role": "user", "content": content}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Qwen3 that greedily replays SCRIPTS and ENV_SCRIPT; with their prompts and expected completions."""
    from scripted_policy import scripted_conversation, train_to_replay
    from tool_fns import CounterEnv
    from transformers import AutoTokenizer

    from rl.chat import use_thinking_template
    from rl.models import build_tiny_qwen3

    path = build_tiny_qwen3(tmp_path_factory.mktemp("scripted") / "model", seed=1, hidden_size=128,
                            intermediate_size=256)
    tokenizer = use_thinking_template(AutoTokenizer.from_pretrained(path))
    tokenizer.save_pretrained(path)
    tools, env_tools = _tool_use(), _tool_use(environment=ENVIRONMENT)
    tools.bind(tokenizer, enable_thinking=False)
    env_tools.bind(tokenizer, enable_thinking=False)
    cases = {}
    for content, (first, final, _) in SCRIPTS.items():
        prompt = _prompt_ids(tokenizer, content + " /no_think")
        cases[content] = (prompt, *scripted_conversation(tokenizer, tools, first, final))
    env = CounterEnv()
    observation = env.reset(start=3)
    env_prompt = _prompt_ids(tokenizer, ENV_SCRIPT[0] + " /no_think", observation)
    cases[ENV_SCRIPT[0]] = (env_prompt, *scripted_conversation(tokenizer, env_tools, *ENV_SCRIPT[1:], env=env))
    tools.close()
    env_tools.close()

    train_to_replay(path, tokenizer.pad_token_id, [(p, c) for p, c, _ in cases.values()])
    return path, tokenizer, cases


@pytest.fixture(scope="module")
def engine(scripted):
    from rl.rollout.vllm_engine import VLLMEngine

    path, _, _ = scripted
    return VLLMEngine(str(path), dtype="bfloat16", max_model_len=2048, kv_cache_gib=0.25)


def _greedy(n: int = 1, max_new_tokens: int = 200):
    from rl.rollout import SamplingSpec

    return SamplingSpec(n=n, max_new_tokens=max_new_tokens, temperature=0.0)


def test_policy_sees_the_tool_answer_and_continues_with_masks_on_tool_tokens(scripted, engine) -> None:
    path, tokenizer, cases = scripted
    tool_use = _tool_use()
    tool_use.bind(tokenizer, enable_thinking=False)
    names = list(SCRIPTS)
    trajectories = tool_use.sample(engine.generate, [cases[c][0] for c in names], _greedy())
    tool_use.close()
    for content, [t] in zip(names, trajectories):
        prompt, completion, mask = cases[content]
        assert t.token_ids == completion, content  # the scripted continuation: the tool's answer was in context
        assert t.loss_mask == mask, content  # 0 exactly on the inserted tool turn
        assert all(lp == 0.0 for lp, m in zip(t.logprobs, mask) if m == 0), content
        assert t.prompt_ids == prompt and t.turns == 2 and t.tool_calls == 1
        assert [m["role"] for m in t.messages] == ["assistant", "tool", "assistant"]
    calc = trajectories[0][0]
    assert calc.messages[1]["content"] == "5535" and calc.tool_errors == 0
    assert calc.messages[0]["tool_calls"][0]["function"] == {"name": "calculator", "arguments": {"expression": "123*45"}}
    assert calc.messages[-1]["content"] == SCRIPTS[names[0]][1]
    # malformed JSON, unknown tool, an exception, a timeout: each answered with an error, none crashed the rollout
    for content, [t] in zip(names[1:], trajectories[1:]):
        assert t.tool_errors == 1, content
        expect = SCRIPTS[content][2]
        if expect:
            assert expect in t.messages[1]["content"], (content, t.messages[1]["content"])
    assert f"did not return within {TIMEOUT_S:g} s" in trajectories[4][0].messages[1]["content"]


def test_environment_instance_per_trajectory_with_reset_observation_and_reward(scripted, engine) -> None:
    path, tokenizer, cases = scripted
    tool_use = _tool_use(environment=ENVIRONMENT)
    tool_use.bind(tokenizer, enable_thinking=False)
    prompt_without_observation = _prompt_ids(tokenizer, ENV_SCRIPT[0] + " /no_think")
    row = {"prompt": [{"role": "user", "content": ENV_SCRIPT[0] + " /no_think"}], "start": 3}

    def render(row: dict, observation: str) -> list[int]:
        return _prompt_ids(tokenizer, row["prompt"], observation)

    [[a, b]] = tool_use.sample(engine.generate, [prompt_without_observation], _greedy(n=2), [row], render)
    prompt, completion, mask = cases[ENV_SCRIPT[0]]
    for t in (a, b):
        assert t.prompt_ids == prompt  # reset()'s observation appended to the last user message
        assert t.token_ids == completion and t.loss_mask == mask
        assert t.messages[1] == {"role": "tool", "name": "increment", "content": "5"}
    assert a.environment is not b.environment  # one instance per trajectory
    reward = tool_use.environment_reward()
    assert reward.label == "CounterEnv"
    assert reward.func(prompts=[row] * 2, completions=[a.messages, b.messages], environments=[a.environment,
                       b.environment]) == [5.0, 5.0]
    tool_use.close()


def test_learner_logprobs_on_a_trajectory_equal_a_plain_forward_pass(scripted) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from rl.batching import TrainBatch
    from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
    from rl.learner import Learner

    path, _, cases = scripted
    prompt, completion, mask = cases["Compute 123 times 45."]
    learner = Learner(str(path), ModelConfig(path=str(path), dtype="float32"), TrainerConfig(max_steps=1),
                      AlgorithmConfig(), temperature=1.0, max_completion_tokens=len(completion))
    batch = TrainBatch([prompt], [completion], [[0.0] * len(completion)], [0.0], loss_masks=[mask])
    [ours] = learner.logprobs(batch)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1]
    plain = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]
    assert len(ours) == len(completion)
    torch.testing.assert_close(torch.tensor(ours), plain, atol=2e-4, rtol=0)


@pytest.mark.slow
def test_grpo_cli_with_tools(scripted, tmp_path: Path) -> None:
    """`python -m rl.grpo` with tools configured: prompts rendered with the schemas, the multi-turn rollout, rewards
    on the trajectories' messages and the tools/* metrics run end to end. (The scripted policy was trained on
    prompts without the schemas, so here it does not reliably call tools: that the calls are answered and
    continued is the tests above.)"""
    import subprocess
    import sys

    import yaml

    path, _, _ = scripted
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": c}], "answer": 5535}) + "\n"
                            for c in SCRIPTS))
    model = tmp_path / "model"
    shutil.copytree(path, model)
    cfg = {"output_dir": str(tmp_path / "run"), "model": {"path": str(model)},
           "data": {"train": str(data), "prompts_per_step": 5, "thinking_template": True, "think_mode": "no_think"},
           "rollout": {"backend": "vllm", "n": 2, "max_new_tokens": 120, "kv_cache_gib": 0.25, "tools": TOOLS,
                       "tool_timeout_s": TIMEOUT_S, "max_turns": 3, "max_tool_tokens": 160},
           "trainer": {"max_steps": 2, "lr": 1e-4, "micro_batch_size": 10, "save_every": 2},
           "rewards": [{"name": "boxed_int"}]}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(config)], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("step", 0) > 0 and "tools/calls_mean" in r]
    assert len(steps) == 2
    assert all(r["tools/turns_mean"] >= 1.0 and 0.0 <= r["tools/error_rate"] <= 1.0 for r in steps)
    assert all(r["tools/turns_mean"] <= 1.0 + r["tools/calls_mean"] for r in steps)  # a turn follows each call
    assert (tmp_path / "run" / "checkpoints" / "step_2").is_dir()
