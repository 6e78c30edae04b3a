"""Prompt data: every supported format loads; bad rows are named; the cursor resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl.data import DataError, PromptStream, load_rows, render_prompt

ROWS = [{"prompt": "What is 1 + 1?", "answer": 2}, {"prompt": [{"role": "user", "content": "Hi"}], "answer": 3}]


def test_jsonl_parquet_and_dataset_dir_load_the_same_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import datasets

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    flat = [{"prompt": "a", "answer": 1}, {"prompt": "b", "answer": 2}]  # parquet columns need one type
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "d.parquet")
    datasets.Dataset.from_list(flat).save_to_disk(str(tmp_path / "ds"))
    assert load_rows(str(tmp_path / "d.jsonl")) == ROWS
    assert load_rows(str(tmp_path / "d.parquet")) == flat
    assert load_rows(str(tmp_path / "ds")) == flat


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "ok"}\n{"question": "x"}\n', "row 2 has no `prompt` column (columns: question)"),
    ('{"prompt": "ok"}\nnot json\n', "row 2 is not valid JSON"),
    ('{"prompt": ""}\n', "row 1 has an empty `prompt`"),
    ('{"prompt": [{"role": "user"}]}\n', "row 1: `prompt` must be a string or a list of {role, content} messages"),
    ('[1, 2]\n', "row 1 must be a JSON object"),
    ("", "no rows"),
])
def test_bad_rows_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        load_rows(str(path))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "d.csv").write_text("prompt\nx\n")
    with pytest.raises(DataError, match="unsupported format"):
        load_rows(str(tmp_path / "d.csv"))


def test_prompt_stream_crosses_epochs_and_resumes_exactly() -> None:
    stream = PromptStream(10, seed=3)
    first = stream.take(7)
    state = stream.state_dict()
    rest = stream.take(9)  # crosses into epoch 1
    assert sorted(first + rest[:3]) == list(range(10))  # epoch 0 is a permutation
    resumed = PromptStream(10, seed=3)
    resumed.load_state_dict(state)
    assert resumed.take(9) == rest
    with pytest.raises(DataError, match="taken on 10 rows"):
        PromptStream(11, seed=3).load_state_dict(state)


def test_render_chat_and_plain_prompts(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert render_prompt("plain text", tok, system_prompt="ignored") == "plain text"
    text = render_prompt([{"role": "user", "content": "Hi"}], tok, system_prompt="Be brief.")
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_unreadable_data_names_the_file_and_row(tmp_path) -> None:
    from rl.data import DataError, load_rows

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "a"}\n{"prompt": "b\xff"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2 is not UTF-8 \(byte 0xff"):
        load_rows(str(bad))
    (tmp_path / "notds").mkdir()
    with pytest.raises(DataError, match="is not a dataset saved with `save_to_disk`"):
        load_rows(str(tmp_path / "notds"))


def test_a_column_a_reward_needs_must_be_in_every_row() -> None:
    import rewards
    from rewards.settings import RewardConfig

    rows = [{"prompt": "a", "answer": 1}, {"prompt": "b"}]
    with pytest.raises(ValueError, match=r"rewards.0: .*needs the dataset column 'answer', which training row 2 lacks"):
        rewards.from_config([RewardConfig(name="math")], [rows, []])
