"""`python -m rl.eval` with `tool_use:`: pass@k over multi-turn trajectories, on the real vLLM engine with a scripted
tiny Qwen3 that calls the built-in calculator. The policy was trained on prompts rendered with the calculator's
schema exactly as rl.eval renders them, so it replays its script only if the eval put the schema into the prompt;
the final answer it writes after the tool turn is what the reward grades."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("vllm")

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
TOOL_USE = {"tools": ["calculator"], "max_turns": 3, "max_tool_tokens": 160}
ENV_TOOL_USE = {"environment": f"{TESTS / 'tool_fns.py'}:CounterEnv", "max_turns": 3, "max_tool_tokens": 160}


def _call(expression: str) -> str:
    return f'<tool_call>\n{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}\n</tool_call>'


# (user prompt, answer column, first turn (None: answers at once), final answer)
SCRIPTS = [
    ("Compute 123 times 45.", 5535, _call("123*45"), "It is \\boxed{5535}."),
    ("Compute 17 times 3.", 51, _call("17*3"), "It is \\boxed{51}."),
    ("Add 2 and 2.", 4, None, "\\boxed{5}."),  # no call, and wrong
]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model, data): the scripted policy and the rows it answers."""
    from scripted_policy import scripted_conversation, train_to_replay
    from transformers import AutoTokenizer

    from rl.chat import use_thinking_template
    from rl.config import ToolUseConfig
    from rl.data import render_prompts, tokenize_prompts
    from rl.models import build_tiny_qwen3
    from rl.rollout.multiturn import ToolUse

    tmp = tmp_path_factory.mktemp("eval_tools")
    path = build_tiny_qwen3(tmp / "model", seed=1, hidden_size=128, intermediate_size=256)
    tokenizer = use_thinking_template(AutoTokenizer.from_pretrained(path))
    tokenizer.save_pretrained(path)
    rows = [{"prompt": prompt, "answer": answer} for prompt, answer, _, _ in SCRIPTS]
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    tool_use = ToolUse.load(ToolUseConfig(**TOOL_USE))
    tool_use.bind(tokenizer, enable_thinking=False)
    texts, _ = render_prompts(rows, tokenizer, system_prompt=None, think_mode="no_think", think_prob=0.0, seed=0,
                              tools=tool_use.schemas)
    cases = []
    for ids, (_, _, first, final) in zip(tokenize_prompts(tokenizer, texts, 4096, "scripts"), SCRIPTS):
        completion = (scripted_conversation(tokenizer, tool_use, first, final)[0] if first else
                      tokenizer.encode(final + tokenizer.eos_token, add_special_tokens=False))
        cases.append((ids, completion))
    tool_use.close()
    train_to_replay(path, tokenizer.pad_token_id, cases)
    return path, data


@pytest.fixture(scope="module")
def scripted_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model, data): a scripted policy that, shown the counter's `reset` observation, calls the environment's
    `increment` once and then answers; the row starts the counter at 3."""
    from scripted_policy import scripted_conversation, train_to_replay
    from tool_fns import CounterEnv
    from transformers import AutoTokenizer

    from rl.chat import use_thinking_template
    from rl.config import ToolUseConfig
    from rl.data import render_prompts, tokenize_prompts, with_observation
    from rl.models import build_tiny_qwen3
    from rl.rollout.multiturn import ToolUse

    tmp = tmp_path_factory.mktemp("eval_env")
    path = build_tiny_qwen3(tmp / "model", seed=1, hidden_size=128, intermediate_size=256)
    tokenizer = use_thinking_template(AutoTokenizer.from_pretrained(path))
    tokenizer.save_pretrained(path)
    row = {"prompt": "Count up.", "start": 3, "answer": 5}
    data = tmp / "data.jsonl"
    data.write_text(json.dumps(row) + "\n")

    tool_use = ToolUse.load(ToolUseConfig(**ENV_TOOL_USE))
    tool_use.bind(tokenizer, enable_thinking=False)
    env = CounterEnv()
    observed = {**row, "prompt": with_observation(row["prompt"], env.reset(**row))}
    texts, _ = render_prompts([observed], tokenizer, system_prompt=None, think_mode="no_think", think_prob=0.0,
                              seed=0, tools=tool_use.schemas)
    first = '<tool_call>\n{"name": "increment", "arguments": {"by": 2}}\n</tool_call>'
    completion, _ = scripted_conversation(tokenizer, tool_use, first, "Done: \\boxed{5}.", env=env)
    tool_use.close()
    train_to_replay(path, tokenizer.pad_token_id, [(tokenize_prompts(tokenizer, texts, 4096, "script")[0], completion)])
    return path, data


def _eval(tmp_path: Path, model: Path, data: Path, **changes) -> subprocess.CompletedProcess:
    cfg = {"output_dir": str(tmp_path / "eval"), "model": {"path": str(model)},
           "data": {"path": str(data), "think_mode": "no_think"},
           "engine": {"backend": "vllm", "kv_cache_gib": 0.25},
           "sampling": {"n": 1, "temperature": 0.0, "max_new_tokens": 120},
           "rewards": [{"name": "boxed_int"}], "tool_use": TOOL_USE, **changes}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "rl.eval", "--config", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_pass_k_over_tool_calling_trajectories(scripted: tuple[Path, Path], tmp_path: Path) -> None:
    out = _eval(tmp_path, *scripted)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())["pass_k"]
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    # each trajectory: the call, the calculator's real answer inserted, the final answer graded
    assert [(s["tool_calls"], s["tool_errors"], s["turns"]) for s in samples] == [(1, 0, 2), (1, 0, 2), (0, 0, 1)]
    assert "<tool_response>\n5535\n</tool_response>" in samples[0]["completion"]
    assert "<tool_response>\n51\n</tool_response>" in samples[1]["completion"]
    assert [s["correct"] for s in samples] == [True, True, False]
    assert results["pass@1"] == pytest.approx(2 / 3)
    assert results["tools/call_rate"] == pytest.approx(2 / 3) and results["tools/error_rate"] == 0.0
    assert "tools/call_rate 0.6667" in out.stdout


@pytest.mark.slow
def test_an_environment_per_trajectory_and_its_reward(scripted_env: tuple[Path, Path], tmp_path: Path) -> None:
    out = _eval(tmp_path, *scripted_env, tool_use=ENV_TOOL_USE)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())["pass_k"]
    [sample] = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    # reset(start=3) was shown to the policy (it replays its script only then), increment(by=2) ran on that
    # trajectory's own instance, and get_reward read it: 5
    assert (sample["tool_calls"], sample["tool_errors"]) == (1, 0)
    assert "<tool_response>\n5\n</tool_response>" in sample["completion"]
    assert sample["rewards"] == {"boxed_int": 1.0, "CounterEnv": 5.0} and sample["correct"]
    assert results["reward/CounterEnv/mean"] == 5.0 and results["pass@1"] == 1.0


def test_bad_tool_fails_before_the_model_loads(scripted: tuple[Path, Path], tmp_path: Path) -> None:
    out = _eval(tmp_path, *scripted, tool_use={"tools": ["calculater"]})
    assert out.returncode != 0
    assert "tool_use.tools" in out.stderr and "calculator" in out.stderr  # did you mean
    assert not (tmp_path / "eval" / "results.json").exists()


def test_tool_use_is_for_pass_k_only() -> None:
    from pydantic import ValidationError

    from rl.eval.config import EvalConfig

    with pytest.raises(ValidationError, match="tool_use applies to pass_k only"):
        EvalConfig.model_validate({"output_dir": "x", "model": {"path": "m"}, "data": {"path": "d"},
                                   "rewards": [{"name": "boxed_int"}], "tool_use": {"tools": ["calculator"]},
                                   "budget_sweep": {"budgets": [0, 8]}})
