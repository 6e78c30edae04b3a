"""Config layer: YAML + overrides, did-you-mean errors, --help / --check, and fail-fast input checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl.config import GRPOConfig
from rl.config_io import ConfigError, load_config

ROOT = Path(__file__).parents[1]
REQUIRED_KEYS = ["model.path", "output_dir", "trainer.max_steps", "trainer.lr", "data.prompts_per_step", "rollout.n",
                 "rollout.backend", "rollout.max_new_tokens", "rollout.temperature", "rollout.workers"]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.grpo", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _config_model(path: Path):
    """The config model of the CLI that reads an example config (`rl.grpo` unless listed)."""
    from distill.config import OffPolicyConfig, OnPolicyConfig
    from rl.eval.config import EvalConfig

    other = {"examples/thinking/eval.yml": EvalConfig, "examples/distill/config.yml": OnPolicyConfig,
             "examples/distill/gkd.yml": OnPolicyConfig, "examples/distill/offpolicy.yml": OffPolicyConfig,
             "examples/tool_use/cold_start.yaml": OffPolicyConfig,
             "examples/tool_use/eval.yaml": EvalConfig}
    return other.get(str(path.relative_to(ROOT)), GRPOConfig)


EXAMPLE_CONFIGS = sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("examples/**/*.yml")])


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_config_parses(path: Path) -> None:
    load_config(_config_model(path), path)


def test_examples_exist() -> None:
    assert len(EXAMPLE_CONFIGS) >= 3, "no example configs found"


def test_required_key_names_exist() -> None:
    cfg = load_config(GRPOConfig, None, ["output_dir=x", "model.path=m", "data.train=d.jsonl", "trainer.max_steps=1",
                                          "rewards=[{name: boxed_int}]"])
    dumped = cfg.model_dump()
    for key in REQUIRED_KEYS:
        node = dumped
        for part in key.split("."):
            node = node[part]
    assert cfg.rollout.backend in ("vllm", "hf")


def test_overrides_are_typed_and_index_lists(tmp_path: Path, make_config) -> None:
    path = make_config()
    cfg = load_config(GRPOConfig, path, ["trainer.lr=1e-6", "rollout.n=16", "rewards.0.weight=0.5",
                                         "algorithm.loss.eps_high=0.28", "model.lora={r: 4}"])
    assert cfg.trainer.lr == 1e-6 and cfg.rollout.n == 16 and cfg.rewards[0].weight == 0.5
    assert cfg.algorithm.loss.eps_high == 0.28 and cfg.model.lora.r == 4
    text = load_config(GRPOConfig, path, ["data.system_prompt=Example: 1 + 2 = 3. - done"]).data.system_prompt
    assert text == "Example: 1 + 2 = 3. - done"


def test_unknown_key_suggests_the_closest(tmp_path: Path, make_config) -> None:
    path = make_config()
    with pytest.raises(ConfigError) as err:
        load_config(GRPOConfig, path, ["trainer.learning_rat=1e-6"])
    assert "trainer.learning_rat: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match=r"did you mean 'rollout.temperature'"):
        load_config(GRPOConfig, path, ["rollout.temperatur=0.7"])


def test_bad_values_name_the_key(tmp_path: Path, make_config) -> None:
    path = make_config()
    with pytest.raises(ConfigError, match=r"rollout.n: .*greater than or equal to 2"):
        load_config(GRPOConfig, path, ["rollout.n=1"])
    with pytest.raises(ConfigError, match=r"rollout.backend: .*'vllm' or 'hf'"):
        load_config(GRPOConfig, path, ["rollout.backend=sglang"])
    with pytest.raises(ConfigError, match=r"exactly one of `name:`"):
        load_config(GRPOConfig, path, ["rewards=[{weight: 1.0}]"])
    with pytest.raises(ConfigError, match="must look like key.sub_key=value"):
        load_config(GRPOConfig, path, ["trainer.lr"])


def test_help_lists_keys_with_docs() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    for key in REQUIRED_KEYS:
        assert key in out.stdout, key
    assert "Completions per prompt (the GRPO group size)." in out.stdout


def test_check_validates_without_loading(tmp_path: Path, make_config) -> None:
    path = make_config()
    out = _cli("--config", str(path), "--check", "rollout.n=4")
    assert out.returncode == 0, out.stderr
    assert "config ok: 64 training prompts" in out.stdout
    assert not (tmp_path / "run").exists()  # nothing written, nothing loaded


def test_bad_key_fails_fast_naming_it(tmp_path: Path, make_config) -> None:
    out = _cli("--config", str(make_config()), "trainer.max_step=3")
    assert out.returncode == 2
    assert "trainer.max_step: unknown key — did you mean 'trainer.max_steps'?" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("typo", "meant"), [("learning_rat", "lr"), ("learning_rate", "lr"),
                                             ("num_generations", None), ("max_stepss", "max_steps")])
def test_did_you_mean_knows_other_toolkits_names(typo: str, meant: str | None, tmp_path) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "o", "model": {"path": "m"}, "data": {"train": "x.jsonl"},
                                    "trainer": {"max_steps": 1, typo: 1}, "rewards": [{"name": "format"}]}))
    with pytest.raises(ConfigError) as info:
        load_config(GRPOConfig, path)
    if meant is None:  # TRL's num_generations is rollout.n, not a key of `trainer`: no hint to a trainer.n
        assert "'trainer.n'" not in str(info.value)
    else:
        assert f"did you mean 'trainer.{meant}'?" in str(info.value)


def test_missing_model_fails_fast_naming_it(tmp_path: Path, make_config) -> None:
    out = _cli("--config", str(make_config()), f"model.path={tmp_path}/no_such_model")
    assert out.returncode == 2
    assert "no_such_model" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_row_without_prompt_fails_fast_naming_row(tmp_path: Path, make_config) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": "fine"}\n{"question": "where is my prompt"}\n')
    out = _cli("--config", str(make_config()), f"data.train={bad}")
    assert out.returncode == 2
    assert f"{bad}: row 3 has no `prompt` column (columns: question)" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_too_long_prompt_fails_at_check_naming_the_row(tmp_path: Path, make_config) -> None:
    long = tmp_path / "long.jsonl"
    long.write_text('{"prompt": "short"}\n{"prompt": "' + "count to ten " * 200 + '"}\n')
    out = _cli("--config", str(make_config()), f"data.train={long}", "data.max_prompt_tokens=64", "--check")
    assert out.returncode == 2, out.stdout
    assert str(long) in out.stderr and "row 2" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_reward_fails_fast(tmp_path: Path, make_config) -> None:
    out = _cli("--config", str(make_config()), "rewards=[{name: boxed_intt}]")
    assert out.returncode == 2
    assert "rewards.0: unknown reward name 'boxed_intt' — did you mean 'boxed_int'?" in out.stderr


def test_eval_sets_inherit_or_override_the_system_prompt(tmp_path: Path) -> None:
    """`eval.data` as a list of sets: a set without `system_prompt` gets `data.system_prompt`, `null` means none;
    the resolved config writes each set's system prompt out, so reloading it means the same."""
    from rl.config_io import dump_config

    base = ["output_dir=x", "model.path=m", "data.train=d.jsonl", "trainer.max_steps=1", "rewards=[{name: boxed_int}]",
            "data.system_prompt=Be brief."]
    sets = "eval.data=[{name: scaffold, data: t.jsonl}, {name: plain, data: t.jsonl, system_prompt: null}, " \
           "{name: other, data: t.jsonl, system_prompt: Hi.}]"
    cfg = load_config(GRPOConfig, None, [*base, sets])
    assert [(s.name, s.system_prompt) for s in cfg.eval.data] == [
        ("scaffold", "Be brief."), ("plain", None), ("other", "Hi.")]
    assert [s.system_prompt for s in cfg.eval.sets(cfg.data.system_prompt)] == ["Be brief.", None, "Hi."]
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(GRPOConfig, tmp_path / "resolved.yaml", ["data.system_prompt=Changed."])
    assert [s.system_prompt for s in again.eval.data] == ["Be brief.", None, "Hi."]
    single = load_config(GRPOConfig, None, [*base, "eval.data=t.jsonl"])
    assert [(s.name, s.data, s.system_prompt) for s in single.eval.sets(single.data.system_prompt)] == [
        ("", "t.jsonl", "Be brief.")]


@pytest.mark.parametrize("sets, message", [
    ("[]", "empty list"),
    ("[{name: a, data: t.jsonl}, {name: a, data: u.jsonl}]", "a appears more than once"),
    ("[{name: 'a b', data: t.jsonl}]", "name"),
])
def test_bad_eval_sets_name_the_key(sets: str, message: str) -> None:
    with pytest.raises(ConfigError, match="eval.data") as e:
        load_config(GRPOConfig, None, ["output_dir=x", "model.path=m", "data.train=d.jsonl", "trainer.max_steps=1",
                                       "rewards=[{name: boxed_int}]", f"eval.data={sets}"])
    assert message in str(e.value)
