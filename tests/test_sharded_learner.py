"""Two learner ranks (FSDP2 over a gloo group, launched by torchrun without Ray) against one learner on the same
batch, in float32 with the KL and entropy terms on: the same loss, gradients, update and metrics for the padded,
shared-prompt and packed layouts (5 prompt groups: the ranks get 3 and 2, so one of them pads); each rank holds
half of the parameters and of AdamW's state; checkpoints move between 2 ranks and 1 in both directions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharded_cases import CASES, LORA, batch, make_learner  # noqa: E402

WORKER = Path(__file__).resolve().parent / "sharded_worker.py"


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return (a - b).norm().item() <= rel * b.norm().item() + 1e-10


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{"single": per case (metrics, grads, params after the step), "ranks": what the worker dumped, paths}."""
    tmp = tmp_path_factory.mktemp("sharded")
    single = {}
    for name, case in CASES.items():
        learner = make_learner(str(tiny_model), **case)
        metrics = learner.train(batch())
        single[name] = {"metrics": metrics,
                        "grads": {n: p.grad.clone() for n, p in learner.policy.model.named_parameters()},
                        "numel": sum(p.numel() for p in learner.policy.model.parameters())}
        if name == "padded":
            learner.save(str(tmp / "single_ckpt"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(WORKER), str(tiny_model), str(tmp / "ranks.pt"), str(tmp / "single_ckpt"),
                    str(tmp / "ranks_ckpt")], check=True, env=env, cwd=Path(__file__).resolve().parents[1],
                   timeout=300)
    return {"single": single, "ranks": torch.load(tmp / "ranks.pt", weights_only=False), "tmp": tmp}


@pytest.mark.parametrize("layout", list(CASES))
def test_two_learners_step_like_one(runs: dict, layout: str) -> None:
    one, two = runs["single"][layout], runs["ranks"][layout]
    assert set(two["grads"]) == set(one["grads"])
    for name, grad in one["grads"].items():
        assert _close(two["grads"][name], grad), f"{layout}: gradient of {name}"
    for key, value in one["metrics"].items():  # loss, entropy, KL, clip fraction, grad norm: reduced over ranks
        assert two["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"{layout}: {key}"


def test_each_rank_holds_half_of_the_parameters_and_optimizer_state(runs: dict) -> None:
    (params0, state0), (params1, state1) = runs["ranks"]["held"]
    total_params = runs["single"]["padded"]["numel"]
    assert params0 + params1 == total_params and state0 + state1 == 2 * total_params  # exp_avg + exp_avg_sq
    for held, total in ((params0, total_params), (params1, total_params), (state0, 2 * total_params),
                        (state1, 2 * total_params)):
        assert 0.45 * total <= held <= 0.55 * total


def test_two_ranks_with_lora_save_the_merged_model_and_an_adapter_that_resumes(runs: dict, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    lora = runs["ranks"]["lora"]
    assert any(not torch.equal(b, torch.zeros_like(b)) for n, b in lora["adapter"].items() if "lora_B" in n)  # trained
    saved = AutoModelForCausalLM.from_pretrained(runs["tmp"] / "lora_ckpt", dtype=torch.float32)
    for name, tensor in saved.named_parameters():
        assert _close(tensor, lora["merged"][name], rel=1e-6), name  # the checkpoint = what the engines got
    resumed = make_learner(str(tiny_model), resume_from=str(runs["tmp"] / "lora_ckpt"), lora=LORA,
                           **CASES["padded"])
    for name, param in resumed.policy.model.named_parameters():
        if "lora_" in name:
            assert torch.equal(param.detach(), lora["adapter"][name]), name


def test_a_two_rank_checkpoint_resumes_on_one_learner(runs: dict, tiny_model: Path) -> None:
    ranks = runs["ranks"]["padded"]
    resumed = make_learner(str(tiny_model), resume_from=str(runs["tmp"] / "ranks_ckpt"), **CASES["padded"])
    for name, param in resumed.policy.model.named_parameters():
        assert torch.equal(param.detach(), ranks["params"][name]), name  # float32 in the HF directory
    for name, state in resumed._named_optimizer_state().items():
        assert torch.equal(state["exp_avg"], ranks["exp_avg"][name]), name
        assert state["step"].item() == 1


def test_a_one_learner_checkpoint_resumes_on_two_ranks_and_continues_exactly(runs: dict, tiny_model: Path) -> None:
    single = make_learner(str(tiny_model), resume_from=str(runs["tmp"] / "single_ckpt"), **CASES["padded"])
    before = {n: s["exp_avg"].clone() for n, s in single._named_optimizer_state().items()}
    ranks = runs["ranks"]["resumed"]
    for name, moment in before.items():
        assert torch.equal(ranks["before"]["exp_avg"][name], moment), name
    metrics = single.train(batch(seed=1))
    # the moments, not the weights: Adam's early updates g/√v ≈ ±lr turn float rounding of a near-zero gradient
    # into a whole step (the weights agree to ~1e-3 relative)
    for name, state in single._named_optimizer_state().items():
        assert _close(ranks["after"]["exp_avg"][name], state["exp_avg"]), name
    assert ranks["metrics"]["policy_loss"] == pytest.approx(metrics["policy_loss"], rel=1e-5)
    assert ranks["metrics"]["lr"] == metrics["lr"]
