"""`python -m rl.datatools`: the query filter (exact 0/N and N/N filtering with a reward the test controls, real
vLLM engine) and rejection sampling into SFT rows (real HF engine), plus their selection rules on hand-made
cases and input errors before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rl.datatools import main
from rl.eval.config import RejectionConfig
from rl.eval.datatools import assign_modes, select_learnable, select_verified
from rl.eval.rejection import Candidate, KeepRules, select_sft_rows

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
SOLVED = [0, 4, 2, 0, 1, 4, 3, 4, 2, 0]  # correct samples of each row, out of N = 4


def test_select_learnable_keeps_neither_all_nor_none() -> None:
    rows = [{"prompt": f"q{i}", "row_id": i} for i in range(len(SOLVED))]
    kept, summary = select_learnable(rows, SOLVED, n=4)
    assert [r["row_id"] for r in kept] == [2, 4, 6, 8]
    assert [r["pass_rate"] for r in kept] == [0.5, 0.25, 0.75, 0.5]
    assert kept[0] == {"prompt": "q2", "row_id": 2, "pass_rate": 0.5}  # the row unchanged + pass_rate
    assert summary == {"prompts": 10, "kept": 4, "dropped_all_correct": 3, "dropped_all_wrong": 3, "n": 4,
                       "pass_rate_histogram": {"0/4": 3, "1/4": 1, "2/4": 2, "3/4": 1, "4/4": 3}}


def test_assign_modes_flags_and_fraction() -> None:
    rows = [{"prompt": f"q{i}"} for i in range(400)] + [{"prompt": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "last"},
        {"role": "assistant", "content": "trailing"}]}]
    conversations, modes = assign_modes(rows, "Be brief.", think_fraction=0.25, seed=3)
    assert 0.18 < modes.count("think") / len(modes) < 0.32
    assert conversations[0][0] == {"role": "system", "content": "Be brief."}
    assert conversations[0][1]["content"] == f"q0 /{modes[0]}"
    assert [m["content"] for m in conversations[-1][1:]] == ["first", "ok", f"last /{modes[-1]}", "trailing"]
    assert rows[-1]["prompt"][2]["content"] == "last"  # the input rows are not modified
    assert assign_modes(rows, None, 0.25, seed=3)[1] == modes  # seeded per row
    assert set(assign_modes(rows, None, 1.0, 0)[1]) == {"think"} and set(assign_modes(rows, None, 0.0, 0)[1]) == {"no_think"}


def test_select_verified_rules() -> None:
    cfg = RejectionConfig(output="x.jsonl", model={"path": "m"}, data={"path": "d.jsonl"},
                          rewards=[{"name": "math"}], max_per_prompt=2)
    think, empty = "<think>\nwork\n</think>\n\n", "<think>\n\n</think>\n\n"
    conversations = [[{"role": "user", "content": "a /think"}], [{"role": "user", "content": "b /no_think"}]]
    responses = [
        [(think + "A", "stop"),             # kept
         (think + "wrong", "stop"),         # reward 0
         (think + "A", "stop"),             # duplicate text
         (think + "cut", "length"),         # truncated
         ("<think>\nnever closed", "stop"),  # thinking never closed
         (think + "B", "stop"),             # kept (second distinct)
         (think + "C", "stop")],            # over max_per_prompt
        [(empty + "A", "stop"),             # kept
         (think + "A", "stop"),             # thought when asked not to
         (empty + "  \n", "stop"),          # blank answer
         (empty + "</think>A", "stop")],    # a second `</think>`: rendered, the reply would lose its answer
    ]
    rewards = [[1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    candidates = [[Candidate(text, finish, r) for (text, finish), r in zip(group, values)]
                  for group, values in zip(responses, rewards)]
    rows, summary = select_verified(conversations, ["think", "no_think"], candidates, cfg)
    assert [r["messages"][-1]["content"] for r in rows] == [think + "A", think + "B", empty + "A"]
    assert rows[2] == {"messages": [{"role": "user", "content": "b /no_think"},
                                    {"role": "assistant", "content": empty + "A"}], "mode": "no_think", "reward": 1.0}
    assert summary == {"prompts": 2, "think_prompts": 1, "no_think_prompts": 1, "samples": 11, "verified": 10,
                       "verified_well_formed": 5, "rows": 3, "rows_think": 2, "rows_no_think": 1,
                       "prompts_without_row": 0}
    cfg.require_finished = False
    rows, _ = select_verified(conversations[:1], ["think"], candidates[:1], cfg)
    assert [r["messages"][-1]["content"] for r in rows] == [think + "A", think + "cut"]


def test_select_sft_rows_offpolicy_rules() -> None:
    """`distill.offpolicy`'s rules on the same function: a threshold on the weighted reward (`min_reward`) or
    none, truncated responses dropped unless `keep_truncated`; duplicates and any form kept, no cap per prompt,
    rows of `messages` only."""
    conversations = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b /no_think"}]]
    candidates = [[Candidate("x", "stop", 0.9), Candidate("x", "stop", 0.5), Candidate("cut", "length", 1.0),
                   Candidate("low", "stop", 0.4)],
                  [Candidate("no block", "stop", 0.2)]]
    got = select_sft_rows(conversations, ["think", "no_think"], candidates, KeepRules(min_reward=0.5))
    reply = {"role": "assistant", "content": "x"}
    assert got.rows == [{"messages": [conversations[0][0], reply]}] * 2
    assert (got.samples, got.rewarded, got.accepted, got.prompts_without_row) == (5, 3, 2, 1)
    assert got.rows_per_mode == {"think": 2}
    everything = select_sft_rows(conversations, ["off", "off"], candidates, KeepRules(require_finished=False))
    assert [r["messages"][-1]["content"] for r in everything.rows] == ["x", "x", "cut", "low", "no block"]
    assert everything.rewarded == everything.accepted == 5 and everything.rows_per_mode == {"off": 5}
    unscored = select_sft_rows(conversations[:1], ["off"], [[Candidate("x", "stop")]], KeepRules(min_reward=0.0))
    assert unscored.rows == [] and unscored.prompts_without_row == 1  # no reward never passes a threshold


# ---- the CLI -----------------------------------------------------------------------------------------------

def _write_config(tmp_path: Path, name: str, cfg: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def filter_setup(tiny_model: Path, tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "queries.jsonl"
    with data.open("w") as f:
        for i, solved in enumerate(SOLVED):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"Count to {i}"}], "row_id": i,
                                "solved": solved}) + "\n")
    config = _write_config(tmp_path, "filter", {
        "output": str(tmp_path / "out" / "filtered.jsonl"),
        "model": {"path": str(tiny_model)},
        "data": {"path": str(data)},
        "engine": {"backend": "vllm", "kv_cache_gib": 0.25},
        "sampling": {"n": 4, "max_new_tokens": 8},
        "rewards": [{"fn": f"{TESTS / 'eval_helpers.py'}:solved_first"}],
    })
    return config, data


@pytest.mark.slow
def test_filter_cli_drops_exactly_all_and_none(filter_setup, tmp_path: Path) -> None:
    config, data = filter_setup
    out = subprocess.run([sys.executable, "-m", "rl.datatools", "filter", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    kept = [json.loads(line) for line in (tmp_path / "out" / "filtered.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert kept == [{**r, "pass_rate": r["solved"] / 4} for r in rows if 0 < r["solved"] < 4]
    summary = json.loads((tmp_path / "out" / "filtered.summary.json").read_text())
    assert summary["dropped_all_correct"] == 3 and summary["dropped_all_wrong"] == 3 and summary["kept"] == 4
    assert summary["pass_rate_histogram"] == {"0/4": 3, "1/4": 1, "2/4": 2, "3/4": 1, "4/4": 3}
    assert json.loads(out.stdout.strip().splitlines()[-1])["kept"] == 4


@pytest.fixture(scope="module")
def think_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eval_helpers import think_model as build

    return build(tiny_model, tmp_path_factory.mktemp("think") / "model")


def test_rejection_cli_writes_verified_sft_rows(think_model: Path, toy_data: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from rl.chat import render
    from rl.eval.mode_following import follows_mode

    output = tmp_path / "sft" / "rows.jsonl"
    config = _write_config(tmp_path, "rejection", {
        "output": str(output),
        "model": {"path": str(think_model)},
        "data": {"path": str(toy_data), "max_prompts": 24},
        "engine": {"backend": "hf"},
        "sampling": {"n": 4, "max_new_tokens": 10},
        "rewards": [{"fn": f"{TESTS / 'eval_helpers.py'}:even_length"}],
        "think_fraction": 0.5, "max_per_prompt": 2,
        "require_finished": False,  # the random model practically never writes its end-of-turn token
    })
    main(["rejection", "--config", str(config)])
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    summary = json.loads(output.with_name("rows.summary.json").read_text())
    assert summary["rows"] == len(rows) and summary["prompts"] == 24 and summary["samples"] == 96
    assert 0 < summary["verified_well_formed"] < summary["verified"] < 96  # the rules drop some verified samples
    assert summary["think_prompts"] > 0 and summary["no_think_prompts"] > 0 and summary["rows_no_think"] > 0
    # (this random model, once it writes `</think>`, repeats it: its thinking rows are rarely well formed; the
    # rules themselves are checked on hand-made candidates above)
    tokenizer = AutoTokenizer.from_pretrained(think_model)
    for row in rows:
        user, reply = row["messages"][-2], row["messages"][-1]
        assert set(row) == {"messages", "mode", "reward"} and reply["role"] == "assistant"
        assert user["content"].endswith(f" /{row['mode']}") and row["reward"] == 1.0
        text = reply["content"]
        assert follows_mode(text, row["mode"] == "think") and text.partition("</think>")[2].strip()
        prefill = "<think>\n" if row["mode"] == "think" else "<think>\n\n</think>\n\n"
        assert text.startswith(prefill) and len(text[len(prefill):]) % 2 == 0  # what the reward saw was even
        # TRL's SFTTrainer renders `messages` with the chat template: the reply comes out as written
        rendered = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert rendered == render(row["messages"], tokenizer, add_generation_prompt=False)
        assert rendered.endswith(text.partition("</think>")[2].lstrip("\n") + "<|im_end|>\n")


def _error(capsys, argv: list[str]) -> str:
    import rl.datatools

    with pytest.raises(SystemExit) as e:
        rl.datatools.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_input_fails_before_the_model_loads(filter_setup, tmp_path: Path, capsys, monkeypatch) -> None:
    import rl.eval.datatools

    monkeypatch.setattr(rl.eval.datatools, "build_engine", lambda *a, **k: pytest.fail("engine built for bad input"))
    config, data = filter_setup
    assert "usage: python -m rl.datatools {filter,rejection}" in _error(capsys, ["filtr", "--config", str(config)])
    err = _error(capsys, ["filter", "--config", str(config), "sampling.temperature=0"])
    assert "sampling.temperature=0 gives N identical samples" in err
    err = _error(capsys, ["filter", "--config", str(config), "sampling.n=1"])
    assert "sampling.n=1: the filter needs N >= 2" in err
    no_solved = tmp_path / "plain.jsonl"
    no_solved.write_text('{"prompt": "hi", "row_id": 1}\n')
    err = _error(capsys, ["filter", "--config", str(config), f"data.path={no_solved}"])
    assert "rewards.0: reward 'solved_first' needs the dataset column 'solved'" in err
    err = _error(capsys, ["rejection", "--config", str(config)])  # the tiny model's plain ChatML template
    assert "no Qwen3 thinking modes" in err and "data.thinking_template: true" in err
    system_only = tmp_path / "system_only.jsonl"
    system_only.write_text('{"prompt": [{"role": "system", "content": "s"}], "row_id": 1, "solved": 1}\n')
    err = _error(capsys, ["rejection", "--config", str(config), f"data.path={system_only}",
                          "data.thinking_template=true"])
    assert f"{system_only}: row 1 has no user message to put the mode flag on" in err
