"""One config base for every training run: `RunConfig`'s checks hold for GRPO and on-policy distillation alike,
distillation rejects by name the keys it does not implement, and `--help` lists keys in each section's order."""

from __future__ import annotations

import inspect
import sys

import pytest
import yaml

import distill.config
import rl.config
from distill.config import NOT_IMPLEMENTED, OnPolicyConfig
from rl.config import EngineConfig, GRPOConfig, RunConfig, Strict
from rl.config_io import ConfigError, fields_in_order, load_config


def _onpolicy_yaml(tmp_path) -> str:
    path = tmp_path / "on.yml"
    path.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "student": {"path": "s"}, "teacher": {"path": "t"},
        "data": {"train": "x.jsonl", "prompts_per_step": 4}, "trainer": {"max_steps": 1},
    }))
    return str(path)


# every NOT_IMPLEMENTED key with a value that is not its default (kl_mode: reward also needs kl_beta > 0)
REJECTED = {
    "rollout.max_staleness": ["rollout.max_staleness=1"],
    "algorithm.dynamic_sampling": ["algorithm.dynamic_sampling=true"],
    "algorithm.dynamic_sampling_rounds": ["algorithm.dynamic_sampling_rounds=5"],
    "algorithm.mask_truncated": ["algorithm.mask_truncated=true"],
    "algorithm.kl_mode": ["algorithm.kl_mode=reward", "algorithm.kl_beta=0.1"],
    "rollout.tools": ["rollout.tools=[calculator]"],
    "rollout.environment": ["rollout.environment=tool_fns.py:CounterEnv"],
}


def test_every_unimplemented_key_is_covered() -> None:
    assert set(REJECTED) == set(NOT_IMPLEMENTED)


@pytest.mark.parametrize("key", sorted(REJECTED))
def test_onpolicy_check_rejects_a_key_it_does_not_implement(key: str, tmp_path, capsys) -> None:
    from distill.onpolicy import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--config", _onpolicy_yaml(tmp_path), "--check", *REJECTED[key]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{key}=" in err and "is not implemented by distill.onpolicy" in err, err
    # the same key at its default is fine
    load_config(OnPolicyConfig, _onpolicy_yaml(tmp_path), [f"{key}={NOT_IMPLEMENTED_DEFAULTS[key]}"])


NOT_IMPLEMENTED_DEFAULTS = {"rollout.max_staleness": 0, "algorithm.dynamic_sampling": "false",
                            "algorithm.dynamic_sampling_rounds": 3, "algorithm.mask_truncated": "false",
                            "algorithm.kl_mode": "loss", "rollout.tools": "[]", "rollout.environment": "null"}


@pytest.mark.parametrize("model", [GRPOConfig, OnPolicyConfig])
def test_run_checks_hold_for_every_training_driver(model: type, tmp_path) -> None:
    # the same cross-field checks, written once in RunConfig
    assert issubclass(model, RunConfig)
    if model is OnPolicyConfig:
        path = _onpolicy_yaml(tmp_path)
    else:
        path = tmp_path / "g.yml"
        path.write_text(yaml.safe_dump({"output_dir": "o", "model": {"path": "m"}, "data": {"train": "x.jsonl",
                                        "prompts_per_step": 4}, "trainer": {"max_steps": 1},
                                        "rewards": [{"name": "format"}]}))
    for overrides, message in [
        (["trainer.mini_batches=3"], "trainer.mini_batches=3 must divide data.prompts_per_step=4"),
        (["rollout.thinking_budget=8"], "rollout.thinking_budget and rollout.max_answer_tokens go together"),
        (["rollout.thinking_budget=8", "rollout.max_answer_tokens=4"], "rollout.thinking_budget needs data.think_mode"),
        (["algorithm.loss.type=gspo", "algorithm.mismatch=mis_token"], "breaks GSPO's sequence ratio"),
        (["trainer.learners=5"], "trainer.learners=5 is more than the prompt groups of a mini-batch"),
        (["trainer.learners=3", "trainer.mini_batches=2"], r"trainer.learners=3 .* \(data.prompts_per_step / "
                                                              r"trainer.mini_batches = 2"),
        (["trainer.learners=2", "rollout.weight_sync=ipc"], "rollout.weight_sync=ipc hands CUDA IPC handles"),
        (["rollout.backend=hf", "rollout.tensor_parallel_size=2"], "tensor_parallel_size=2 needs backend=vllm"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(model, path, overrides)


@pytest.mark.parametrize(("overrides", "gpus", "message"), [
    (["trainer.learners=4"], 2, r"trainer.learners=4, one GPU per rank need 4 GPU\(s\) and this machine has 2"),
    (["trainer.learners=2", "cluster.placement=disaggregated", "rollout.workers=2"], 3,
     r"trainer.learners=2 \+ rollout.workers=2 .* need 4 GPU"),
    (["rollout.tensor_parallel_size=2"], 4, "needs cluster.placement=disaggregated on GPUs"),
])
def test_placement_needs_its_gpus_before_anything_loads(overrides, gpus, message, tmp_path, monkeypatch) -> None:
    import rl.placement

    path = tmp_path / "g.yml"
    path.write_text(yaml.safe_dump({"output_dir": "o", "model": {"path": "m"}, "data": {"train": "x.jsonl",
                                    "prompts_per_step": 4}, "trainer": {"max_steps": 1},
                                    "rewards": [{"name": "format"}]}))
    cfg = load_config(GRPOConfig, path, overrides)
    monkeypatch.setattr(rl.placement, "_cuda_devices", lambda: gpus)
    with pytest.raises(ValueError, match=message):
        rl.placement.check(cfg)
    monkeypatch.setattr(rl.placement, "_cuda_devices", lambda: 0)
    rl.placement.check(cfg)  # no GPUs: everything on the CPU


def _config_sections() -> list[type]:
    modules = [rl.config, distill.config]
    from rl.eval import config as eval_config

    modules.append(eval_config)
    return sorted({cls for m in modules for _, cls in inspect.getmembers(m, inspect.isclass)
                   if issubclass(cls, Strict) and cls.__module__ == m.__name__}, key=lambda c: c.__qualname__)


@pytest.mark.parametrize("section", _config_sections(), ids=lambda c: c.__qualname__)
def test_key_order_names_every_key_of_its_section_once(section: type) -> None:
    if not section.key_order:
        return
    assert sorted(section.key_order) == sorted(section.model_fields), section
    assert [name for name, _ in fields_in_order(section)] == list(section.key_order)


def test_every_engine_section_is_one_engine_config() -> None:
    from distill.config import GenerateConfig
    from rl.config import RolloutConfig
    from rl.eval import config as eval_config

    engines = [RolloutConfig, GenerateConfig] + [cls for _, cls in inspect.getmembers(eval_config, inspect.isclass)
                                                 if "backend" in getattr(cls, "model_fields", {})]
    assert all(issubclass(cls, EngineConfig) for cls in engines), engines


def test_config_layer_imports_neither_torch_nor_vllm() -> None:
    import subprocess

    code = ("import sys, rl.config, distill.config, rl.eval.config, rewards.settings; "
            "assert not {'torch', 'vllm', 'ray'} & set(sys.modules), sorted({'torch', 'vllm', 'ray'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
