"""`python -m rl.eval`: the pass@k estimator and the mode-following score on hand-worked cases, input errors
before any model loads, and the real CLI end to end with the real vLLM engine on a tiny Qwen3."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rl.eval.mode_following import follows_mode, summarize
from rl.eval.pass_k import pass_at_k, pass_metrics

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent


# ---- pass@k ------------------------------------------------------------------------------------------------

def test_pass_at_k_hand_values() -> None:
    # n = 5, c = 2: pass@1 = 2/5; pass@2 = 1 − C(3,2)/C(5,2) = 1 − 3/10; pass@3 = 1 − C(3,3)/C(5,3) = 1 − 1/10;
    # pass@4: fewer than 4 wrong samples, so every 4-subset holds a correct one.
    assert [pass_at_k(5, 2, k) for k in (1, 2, 3, 4)] == pytest.approx([0.4, 0.7, 0.9, 1.0])
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # C(7,5) = 21, C(10,5) = 252
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(200, 1, 1) == pytest.approx(0.005)
    for n, c, k in ((3, 4, 1), (3, 1, 4), (3, 1, 0)):
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


def test_pass_metrics_average_over_prompts() -> None:
    got = pass_metrics([0, 2, 5], n=5, ks=[1, 2, 8])  # k > n is left out
    assert got == pytest.approx({"pass@1": (0 + 0.4 + 1) / 3, "pass@2": (0 + 0.7 + 1) / 3})


# ---- mode following ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("response, thinking, ok", [
    ("<think>\n\n</think>\n\nThe answer is 4.", False, True),
    ("<think>\n\n</think>\n\nThe answer is 4.", True, False),  # asked to think, empty block
    ("<think>\n2 + 2 = 4\n</think>\n\nThe answer is 4.", True, True),
    ("<think>\n2 + 2 = 4\n</think>\n\nThe answer is 4.", False, False),  # asked not to think, thought
    ("The answer is 4.", True, False),  # no block at all
    ("The answer is 4.", False, False),
    ("<think>\n2 + 2 is", True, True),  # still thinking when cut at max_new_tokens
    ("<think>\n   \n", True, False),
    ("<think>\n\n</think>\n\n<think>sneaky</think>4", False, False),  # a second block after the empty one
    ("\n<think></think>4", False, True),
])
def test_follows_mode(response: str, thinking: bool, ok: bool) -> None:
    assert follows_mode(response, thinking) is ok


def test_mode_following_summary() -> None:
    asked = [[True, False, False], [False, True, True]]
    obeyed = [[True, False, True], [True, True, False]]
    got = summarize(asked, obeyed)
    # turns: 4 of 6 obeyed; think turns (d0t0, d1t1, d1t2): 2 of 3; no_think (d0t1, d0t2, d1t0): 2 of 3;
    # switches (mode differs from the previous turn: d0t1, d1t1): 1 of 2.
    assert got == {"score": 4 / 6, "think_score": 2 / 3, "no_think_score": 2 / 3, "switch_score": 0.5,
                   "turns": 6, "think_turns": 3, "switch_turns": 2}


# ---- the CLI -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def think_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eval_helpers import think_model as build

    return build(tiny_model, tmp_path_factory.mktemp("think") / "model")


def _config(tmp_path: Path, model: Path, data: Path, **sections) -> Path:
    cfg = {
        "output_dir": str(tmp_path / "eval"),
        "model": {"path": str(model)},
        "data": {"path": str(data), "max_prompts": 8, "thinking_template": True},
        "engine": {"backend": "vllm", "kv_cache_gib": 0.25},
        "sampling": {"n": 4, "temperature": 1.0, "max_new_tokens": 12},
        "rewards": [{"fn": f"{TESTS / 'eval_helpers.py'}:even_length"}],
        "pass_k": {"k": [1, 2, 4]},
        "budget_sweep": {"budgets": [0, 2, 6], "max_answer_tokens": 6},
        "mode_check": {"dialogues": 6, "turns": 3, "max_new_tokens": 8},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_eval_cli_end_to_end(think_model: Path, toy_data: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "rl.eval", "--config", str(_config(tmp_path, think_model, toy_data))],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "eval"
    results = json.loads((run / "results.json").read_text())

    # pass@k recomputed by hand from the written samples (correct = primary reward >= 1.0)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 * 4
    counts = [0] * 8
    for s in samples:
        assert s["correct"] == (s["rewards"]["even_length"] >= 1.0) == (len(s["completion"]) % 2 == 0)
        counts[s["prompt_index"]] += s["correct"]
    assert 0 < sum(counts) < 32
    for k in (1, 2, 4):
        assert results["pass_k"][f"pass@{k}"] == pytest.approx(sum(pass_at_k(4, c, k) for c in counts) / 8)

    # the budget table: one row per budget, in the three formats, and the curve
    with (run / "budget_sweep.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["budget"]) for r in table] == [0, 2, 6]
    assert [r["mode"] for r in table] == ["no_think", "think", "think"]
    assert [r["budget"] for r in json.loads((run / "budget_sweep.json").read_text())] == [0, 2, 6]
    assert "| budget |" in out.stdout and results["budget_sweep"][1]["budget"] == 2
    for row in table[1:]:
        assert 0 < float(row["thinking_tokens_mean"]) <= int(row["budget"])
    assert float(table[1]["budget_hit_frac"]) > 0  # two tokens rarely suffice
    assert float(table[0]["thinking_tokens_mean"]) == 0 and float(table[0]["completion_tokens_mean"]) <= 6
    assert (run / "budget_curve.png").stat().st_size > 10_000

    # mode following: the written responses, re-scored, give the reported numbers
    dialogues = [json.loads(line) for line in (run / "mode_following.jsonl").read_text().splitlines()]
    assert len(dialogues) == 6
    asked, obeyed = [], []
    for d in dialogues:
        replies = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
        assert len(replies) == 3 and d["obeyed"] == [follows_mode(r, a == "think") for r, a in zip(replies, d["asked"])]
        asked.append([a == "think" for a in d["asked"]])
        obeyed.append(d["obeyed"])
    assert results["mode_following"] == summarize(asked, obeyed)
    # the fusion template pre-fills the empty block: /no_think turns always obey; the model closes some of its
    # think blocks at once (empty thinking), so not every thinking turn does
    assert results["mode_following"]["no_think_score"] == 1.0
    assert results["mode_following"]["think_turns"] > 0


def _main_error(capsys, monkeypatch, config: Path, *overrides: str) -> str:
    """Run the CLI in-process, expecting exit 2 before any engine is built."""
    import rl.eval.cli

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine must not be built for bad input")

    monkeypatch.setattr(rl.eval.cli, "build_engine", no_engine)
    with pytest.raises(SystemExit) as e:
        rl.eval.cli.main(["--config", str(config), *overrides])
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_input_fails_before_the_model_loads(tiny_model: Path, toy_data: Path, tmp_path: Path, capsys,
                                                 monkeypatch) -> None:
    config = _config(tmp_path, tiny_model, toy_data)
    err = _main_error(capsys, monkeypatch, config, "sampling.temprature=1.0")
    assert "sampling.temprature: unknown key — did you mean 'sampling.temperature'?" in err
    err = _main_error(capsys, monkeypatch, config, "pass_k.k=[8]")
    assert "pass_k.k=[8] needs sampling.n >= 8" in err
    err = _main_error(capsys, monkeypatch, config, "rewards.0.fn=tests/toy_reward.py:nope")
    assert "rewards.0:" in err and "no function 'nope'" in err
    err = _main_error(capsys, monkeypatch, config, "data.thinking_template=false")
    assert "no Qwen3 thinking modes" in err and "data.thinking_template: true" in err
    err = _main_error(capsys, monkeypatch, config, "engine.max_model_len=32")
    assert "engine.max_model_len=32 is shorter than" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "answer": 1}\n{"question": "no prompt"}\n')
    err = _main_error(capsys, monkeypatch, config, f"data.path={bad}")
    assert f"{bad}: row 2 has no `prompt` column" in err
    err = _main_error(capsys, monkeypatch, config, "pass_k=null", "budget_sweep=null", "mode_check=null")
    assert "nothing to do" in err


def test_missing_reward_column_is_named(tiny_model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text('{"prompt": "What is 1 + 1?"}\n')
    err = _main_error(capsys, monkeypatch, _config(tmp_path, tiny_model, data), "rewards=[{name: boxed_int}]")
    assert "rewards.0: reward 'boxed_int' needs the dataset column 'answer'" in err


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/**/eval*.yml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_eval_configs_parse(path: Path) -> None:
    from rl.config_io import load_config
    from rl.eval.config import EvalConfig

    cfg = load_config(EvalConfig, path)
    assert cfg.budget_sweep and cfg.rewards
