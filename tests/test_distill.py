"""Distillation on tiny models: the teacher's scores, the vocabulary check, off-policy produce-then-SFT, and
on-policy distillation through the real CLI (Ray + vLLM) with the KL to the teacher falling."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


def counting_answer(i: int) -> str:
    """What the tiny teacher learned to answer to "Count to {i}": twelve digits counting up from i mod 10."""
    return " ".join(str((i + k) % 10) for k in range(12))


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory, toy_data: Path) -> Path:
    """A tiny Qwen3 with the student's tokenizer (seed 1) trained for 150 full-batch steps to answer the toy
    prompts by counting (`counting_answer`): a teacher with a sharp, learnable distribution, whose KL from the
    near-uniform random student starts at ~4.7 nats per token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.models import build_tiny_qwen3

    path = build_tiny_qwen3(tmp_path_factory.mktemp("teacher") / "model", seed=1)
    tok = AutoTokenizer.from_pretrained(path)
    rows = [json.loads(line) for line in toy_data.read_text().splitlines()]
    texts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
             + counting_answer(r["answer"]) for r in rows]
    seqs = tok(texts, add_special_tokens=False)["input_ids"]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    labels = torch.tensor([s + [-100] * (width - len(s)) for s in seqs])
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~20x faster than two on a busy 2-core machine
    try:
        torch.manual_seed(0)
        for _ in range(150):
            loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.to(torch.bfloat16).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_vocab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rl.models import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("other") / "model", vocab_size=400)


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/distill/*.yml")), ids=lambda p: p.name)
def test_distill_example_configs_parse(path: Path) -> None:
    from distill.config import OffPolicyConfig, OnPolicyConfig
    from rl.config_io import load_config

    cfg = load_config(OffPolicyConfig if path.stem == "offpolicy" else OnPolicyConfig, path)
    assert cfg.output_dir.startswith("runs/distill/")


def test_kept_layers_even_and_from_the_middle() -> None:
    from distill.shrink import kept_layers

    assert kept_layers(30, 24) == [i for i in range(30) if i not in (2, 7, 12, 17, 22, 27)]  # first and last kept
    assert kept_layers(6, 1) == [5] and kept_layers(6, 6) == list(range(6))
    # keep_ends 4: layers 0-3 and 26-29 stay, the 6 dropped ones are evenly spread over layers 4-25
    assert kept_layers(30, 24, keep_ends=4) == [i for i in range(30) if i not in (5, 9, 13, 16, 20, 24)]
    assert kept_layers(10, 4, keep_ends=2) == [0, 1, 8, 9]  # every middle layer dropped
    with pytest.raises(ValueError, match="keeping 3 at each end leaves 4"):
        kept_layers(10, 4, keep_ends=3)
    with pytest.raises(ValueError, match="--layers 31"):
        kept_layers(30, 31)


def _write_yaml(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


def _prompt_ids(model: Path, texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False) for t in texts]


def test_teacher_scores_match_the_engine_and_form_distributions(tiny_teacher: Path) -> None:
    from distill.teacher import Teacher
    from rl.rollout import SamplingSpec

    # float32: this checks the scoring, not bf16 rounding (which the tiny teacher's logits × 40 amplify to ~0.02
    # between the shared-prompt layout's two passes and the engine's one)
    teacher = Teacher(str(tiny_teacher), dtype="float32", top_k=4, micro_batch_size=2, torch_threads=1)
    prompts = _prompt_ids(tiny_teacher, ["What is 2 + 3?", "Count to 7", "hello"])
    groups = teacher.generate(prompts, SamplingSpec(n=1, max_new_tokens=8, seed=0))
    completions = [g[0].token_ids for g in groups]
    scores, full = teacher.score(prompts, completions, full=True)
    for p, c, s, dense, sampled in zip(prompts, completions, scores, full, groups):
        assert len(s.logprobs) == len(c) == len(s.topk_ids) == len(s.tail_logprob) == dense.shape[0]
        # the sampled token's logprob is the engine's own score, and close to the sampler's (batched, with left
        # padding)
        assert s.logprobs == pytest.approx(teacher.engine.score(p, c), abs=1e-4)
        assert s.logprobs == pytest.approx(sampled[0].logprobs, abs=0.2)
        for t in range(len(c)):
            assert s.topk_logprobs[t] == sorted(s.topk_logprobs[t], reverse=True)
            assert dense[t][s.topk_ids[t][0]] == dense[t].max()  # bf16 logits tie often: compare values
            mass = torch.logsumexp(torch.tensor([*s.topk_logprobs[t], s.tail_logprob[t]]), 0)
            assert mass.item() == pytest.approx(0.0, abs=1e-5)  # top-k + tail = the whole distribution
    assert scores[0].logprobs == pytest.approx(teacher.score(prompts[:1], completions[:1])[0][0].logprobs)


def test_teacher_scores_the_same_in_the_shared_and_padded_layouts(tiny_teacher: Path) -> None:
    # the shared layout runs each distinct prompt once; its completions attend to the cached keys/values
    from distill.teacher import Teacher
    from rl.rollout import SamplingSpec

    shared = Teacher(str(tiny_teacher), dtype="float32", top_k=4, micro_batch_size=4, torch_threads=1)
    padded = Teacher(str(tiny_teacher), dtype="float32", top_k=4, micro_batch_size=4, share_prompts=False,
                     torch_threads=1)
    prompts = _prompt_ids(tiny_teacher, ["What is 2 + 3?", "Count to 7"])
    groups = shared.generate(prompts, SamplingSpec(n=3, max_new_tokens=8, temperature=1.5, seed=0))
    prompt_ids = [p for p in prompts for _ in range(3)]  # micro-batches of 4 cut the second prompt's group
    completions = [c.token_ids for g in groups for c in g]
    (s_scores, s_dense), (p_scores, p_dense) = (t.score(prompt_ids, completions, full=True) for t in (shared, padded))
    for s, p, sd, pd in zip(s_scores, p_scores, s_dense, p_dense):
        assert s.logprobs == pytest.approx(p.logprobs, abs=1e-5)
        assert s.tail_logprob == pytest.approx(p.tail_logprob, abs=1e-5)
        assert s.topk_ids == p.topk_ids
        assert torch.allclose(sd, pd, atol=1e-5)


def test_onpolicy_help_lists_every_loss_type() -> None:
    out = subprocess.run([sys.executable, "-m", "distill.onpolicy", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for tag in ("sampled_kl", "full_kl", "gkd"):
        assert f"loss (type: {tag}):" in out.stdout
    assert "loss.beta" in out.stdout and "loss.on_policy_fraction" in out.stdout and "teacher.share_prompts" in out.stdout


def test_vocabulary_mismatch_is_a_clear_error_before_loading(tiny_model: Path, tiny_teacher: Path,
                                                             other_vocab_model: Path, tmp_path: Path) -> None:
    from distill.vocab import VocabularyMismatch, check_same_vocabulary

    check_same_vocabulary(str(tiny_model), str(tiny_teacher))  # same tokenizer, different weights: fine
    with pytest.raises(VocabularyMismatch, match=r"do not share a vocabulary: \d+ vs \d+ tokens; id \d+ is"):
        check_same_vocabulary(str(tiny_model), str(other_vocab_model))
    # through the CLI: exit code 2 with the message, from --check (nothing loads) and from a real run
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"prompt": "hi"}) + "\n")
    config = _write_yaml(tmp_path / "c.yaml", {
        "output_dir": str(tmp_path / "run"), "student": {"path": str(tiny_model)},
        "teacher": {"path": str(other_vocab_model)}, "data": {"train": str(data)}, "trainer": {"max_steps": 1}})
    for extra in (["--check"], []):
        out = subprocess.run([sys.executable, "-m", "distill.onpolicy", "--config", str(config), *extra], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "do not share a vocabulary" in out.stderr and "teacher must use the student's tokenizer" in out.stderr
    assert not (tmp_path / "run").exists()


def _mean_logprob(model: Path, rows: list[dict]) -> float:
    """Mean per-token log-probability of the rows' assistant responses under `model` (rendered as in SFT)."""
    from transformers import AutoTokenizer

    from distill.sft_data import prompt_completion
    from distill.teacher import Teacher

    tok = AutoTokenizer.from_pretrained(model)
    pairs = [prompt_completion(r["messages"], tok, None) for r in rows]
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p, _ in pairs]
    completions = [tok(c, add_special_tokens=False)["input_ids"] for _, c in pairs]
    scores, _ = Teacher(str(model), dtype="float32", torch_threads=1).score(prompts, completions)
    return sum(sum(s.logprobs) for s in scores) / sum(len(s.logprobs) for s in scores)


def test_offpolicy_generate_then_sft_round_trip(tiny_model: Path, tiny_teacher: Path, toy_data: Path,
                                                tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "off.yaml", {
        "output_dir": str(tmp_path / "off"), "student": str(tiny_model), "teacher": str(tiny_teacher),
        "data": {"train": str(toy_data)},
        "generate": {"backend": "hf", "n": 2, "max_new_tokens": 12, "temperature": 1.0, "keep_truncated": True},
        "rewards": [{"fn": f"{ROOT / 'tests' / 'toy_reward.py'}:digit_fraction"}],
        "sft": {"epochs": 2, "lr": 5e-3, "batch_size": 32, "dtype": "float32"}, "torch_threads": 1,
    })
    out = subprocess.run([sys.executable, "-m", "distill.offpolicy", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "off"
    rows = [json.loads(line) for line in (run / "sft.jsonl").read_text().splitlines()]
    assert len(rows) == 128  # 64 prompts × 2, nothing filtered (keep_truncated, no min_reward)
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][0]["role"] == "user" for r in rows)
    stats = json.loads((run / "generate_stats.json").read_text())
    assert stats["kept"] == 128 and 0.0 <= stats["reward_mean"] <= 1.0
    log = [json.loads(line) for line in (run / "sft_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.75 * losses[0], losses  # measured: 6.2 → 3.4 over 24 smaller steps
    # the fine-tuned student assigns the teacher's responses far more probability than it did before
    before, after = _mean_logprob(tiny_model, rows), _mean_logprob(run / "model", rows)
    assert after > before + 1.0, (before, after)
    assert math.isfinite(after)


def test_offpolicy_keeps_only_verified_responses(tiny_model: Path, tiny_teacher: Path, toy_data: Path,
                                                 tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "gen.yaml", {
        "output_dir": str(tmp_path / "gen"), "student": str(tiny_model), "teacher": str(tiny_teacher),
        "data": {"train": str(toy_data)},
        "generate": {"backend": "hf", "n": 2, "max_new_tokens": 12, "temperature": 1.5, "keep_truncated": True,
                     "min_reward": 0.4},
        "rewards": [{"fn": f"{ROOT / 'tests' / 'toy_reward.py'}:digit_fraction"}], "torch_threads": 1,
    })
    out = subprocess.run([sys.executable, "-m", "distill.offpolicy", "--config", str(config), "--stage", "generate"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "gen" / "sft.jsonl").read_text().splitlines()]
    contents = [r["messages"][-1]["content"] for r in rows]
    assert all(sum(ch.isdigit() for ch in c) >= 0.4 * len(c) for c in contents)
    stats = json.loads((tmp_path / "gen" / "generate_stats.json").read_text())
    assert 0 < stats["kept"] == len(rows) < stats["responses"] == 128  # hot sampling: some answers are not digits
    assert not (tmp_path / "gen" / "model").exists()


def _learner(student: Path, loss: dict, micro_batch_size: int = 16, lr: float = 1e-2):
    from distill.config import OnPolicyConfig
    from distill.learner import DistillLearner

    cfg = OnPolicyConfig.model_validate({
        "output_dir": "unused", "student": {"path": str(student), "dtype": "float32"}, "teacher": {"path": "unused"},
        "data": {"train": "unused"}, "rollout": {"n": 2},
        "trainer": {"max_steps": 4, "lr": lr, "micro_batch_size": micro_batch_size, "torch_threads": 1}, "loss": loss})
    learner = DistillLearner(str(student), cfg.student, cfg.trainer, cfg.algorithm, 1.0, max_completion_tokens=8,
                             loss_cfg=cfg.loss)
    return cfg, learner


def _teacher_batch(cfg, student: Path, teacher_path: Path):
    """Student samples (the transformers engine) for 3 prompts × 2, scored by the teacher: the learner's batch."""
    from distill.onpolicy import make_batch
    from distill.teacher import Teacher
    from rl.rollout import SamplingSpec
    from rl.rollout.hf_engine import HFEngine

    prompts = _prompt_ids(student, ["What is 2 + 3?", "Count to 7", "hello there"])
    groups = HFEngine(str(student), dtype="float32").generate(prompts, SamplingSpec(n=2, max_new_tokens=8, seed=0))
    completions = [c for g in groups for c in g]
    prompt_ids = [p for p in prompts for _ in range(2)]
    teacher = Teacher(str(teacher_path), dtype="float32", top_k=cfg.loss.top_k or 1, torch_threads=1)
    scores, dense = teacher.score(prompt_ids, [c.token_ids for c in completions], full=True)
    return make_batch(cfg, prompt_ids, completions, scores, [0.0] * len(completions), True), dense


def _direct_kl(student: Path, batch, dense) -> float:
    """Mean over completion tokens of KL(S‖T) over the vocabulary, from a plain transformers forward pass."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    total, count = 0.0, 0
    for p, c, d in zip(batch.prompt_ids, batch.completion_ids, dense):
        logits = model(torch.tensor([p + c])).logits[0, len(p) - 1 : len(p) + len(c) - 1]
        s = torch.log_softmax(logits, -1)
        total += (s.exp() * (s - d)).sum().item()
        count += len(c)
    return total / count


def test_distill_learner_full_kl_is_exact_split_invariant_and_learns(tiny_model: Path, tiny_teacher: Path) -> None:
    cfg, learner = _learner(tiny_model, {"type": "full_kl", "top_k": None})
    batch, dense = _teacher_batch(cfg, tiny_model, tiny_teacher)
    expected = _direct_kl(tiny_model, batch, dense)
    first = learner.train_distill(batch, 1, dense)
    assert first["distill_loss"] == pytest.approx(expected, rel=1e-4)
    assert first["policy_loss"] == 0.0  # no sampled-KL or reward advantages: the PG term is exactly zero
    _, split = _learner(tiny_model, {"type": "full_kl", "top_k": None}, micro_batch_size=1)
    assert split.train_distill(batch, 1, dense)["distill_loss"] == pytest.approx(expected, rel=1e-4)
    for step in range(2, 5):
        last = learner.train_distill(batch, step, dense)
    assert last["distill_loss"] < 0.9 * first["distill_loss"], (first["distill_loss"], last["distill_loss"])  # 14.0 → 11.8


def test_topk_bucket_kl_bounds_the_full_kl_and_gkd_runs(tiny_model: Path, tiny_teacher: Path) -> None:
    cfg, learner = _learner(tiny_model, {"type": "full_kl", "top_k": 4})
    batch, dense = _teacher_batch(cfg, tiny_model, tiny_teacher)
    bucket = learner.train_distill(batch, 1)["distill_loss"]  # no dense tensors needed: K+1 numbers per token
    assert 0.0 < bucket < _direct_kl(tiny_model, batch, dense)
    cfg, learner = _learner(tiny_model, {"type": "gkd", "beta": 0.5, "top_k": None})
    gkd = learner.train_distill(batch, 1, dense)
    assert 0.0 < gkd["distill_loss"] < math.log(2)  # JSD_0.5 is bounded by ln 2
    assert 0.0 <= gkd["top1_agreement"] <= 1.0


def test_sampled_kl_advantages_reach_the_policy_loss(tiny_model: Path, tiny_teacher: Path) -> None:
    cfg, learner = _learner(tiny_model, {"type": "sampled_kl"})
    batch, _ = _teacher_batch(cfg, tiny_model, tiny_teacher)
    # advantage = log T − log S of each sampled token (the student samples, so log S is the sampler's logprob)
    flat_adv = [a for row in batch.token_advantages for a in row]
    gap = [o - a for row_o, row_a in zip(batch.old_logprobs, batch.token_advantages) for o, a in zip(row_o, row_a)]
    assert all(a != 0.0 for a in flat_adv)
    metrics = learner.train_distill(batch, 1)
    assert "distill_loss" not in metrics and metrics["policy_loss"] != 0.0
    assert len(gap) == batch.num_completion_tokens


def _onpolicy(tmp_path: Path, student: Path, teacher: Path, data: Path, **sections: dict) -> tuple[Path, list[dict]]:
    cfg = {
        "output_dir": str(tmp_path / "run"), "student": {"path": str(student)},
        "teacher": {"path": str(teacher), "torch_threads": 1}, "data": {"train": str(data), "prompts_per_step": 4},
        "rollout": {"backend": "vllm", "n": 8, "max_new_tokens": 16, "kv_cache_gib": 0.25},
        "trainer": {"max_steps": 40, "lr": 3e-3, "micro_batch_size": 16, "save_every": 20, "torch_threads": 1},
        "rewards": [{"fn": f"{ROOT / 'tests' / 'toy_reward.py'}:digit_fraction"}],
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    config = _write_yaml(tmp_path / "on.yaml", cfg)
    out = subprocess.run([sys.executable, "-m", "distill.onpolicy", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "KL to the teacher per step:" in out.stdout
    run = tmp_path / "run"
    return run, [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_onpolicy_cli_vllm_kl_to_teacher_falls_by_half(tiny_model: Path, tiny_teacher: Path, toy_data: Path,
                                                      tmp_path: Path) -> None:
    run, records = _onpolicy(tmp_path, tiny_model, tiny_teacher, toy_data, loss={"type": "full_kl", "top_k": 16})
    assert [r["step"] for r in records] == list(range(1, 41))
    keys = {"kl_teacher", "top1_agreement", "distill_loss", "reward_mean", "entropy", "response_len_mean",
            "time_rollout_s", "time_teacher_reward_s", "time_train_s", "time_sync_s", "reward/digit_fraction/mean"}
    assert keys <= set(records[0])
    kl = [r["kl_teacher"] for r in records]
    first, last = sum(kl[:3]) / 3, sum(kl[-3:]) / 3
    assert last < 0.5 * first, [round(k, 2) for k in kl]  # measured: 4.7 → 0.2 nats per token
    # the student took up the teacher's habit of answering with digits (the reward is only measured here)
    assert sum(r["reward_mean"] for r in records[-3:]) / 3 > sum(r["reward_mean"] for r in records[:3]) / 3 + 0.2
    assert (run / "curves.png").stat().st_size > 10_000 and list((run / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_20", "step_40"]
    assert "loss:\n  kl_coef: 1.0" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_onpolicy_cli_with_two_sharded_learners_moves_toward_the_teacher(tiny_model: Path, tiny_teacher: Path,
                                                                        toy_data: Path, tmp_path: Path) -> None:
    # trainer.learners=2: the distillation learner sharded over two ranks, the teacher's full [T, V]
    # log-probabilities reaching both through the object store
    _, records = _onpolicy(tmp_path, tiny_model, tiny_teacher, toy_data, loss={"type": "full_kl", "top_k": None},
                           trainer={"max_steps": 10, "save_every": 10, "learners": 2})
    kl = [r["kl_teacher"] for r in records]
    assert sum(kl[-3:]) / 3 < 0.9 * sum(kl[:3]) / 3, [round(k, 2) for k in kl]  # measured: 4.65 → 4.01
    assert max(r["mismatch_kl"] for r in records) < 0.01  # the engine samples from the ranks' current weights


@pytest.mark.slow
def test_onpolicy_cli_gkd_mixes_teacher_samples_and_full_vocabulary(tiny_model: Path, tiny_teacher: Path,
                                                                    toy_data: Path, tmp_path: Path) -> None:
    # λ = 0.5: about half the steps train on the teacher's own samples; full-vocabulary JSD (the teacher's
    # [T, V] log-probabilities go from its actor to the learner through Ray's object store); HF rollout.
    _, records = _onpolicy(tmp_path, tiny_model, tiny_teacher, toy_data, rollout={"backend": "hf"},
                           trainer={"max_steps": 24, "save_every": 24},
                           loss={"type": "gkd", "beta": 0.5, "on_policy_fraction": 0.5, "top_k": None})
    on = [r for r in records if r["on_policy"] == 1.0]
    off = [r for r in records if r["on_policy"] == 0.0]
    assert on and off and all("kl_teacher" not in r for r in off)  # KL(S‖T) is estimated on student samples only
    assert all(r["distill_loss"] < math.log(2) for r in records)
    assert sum(r["kl_teacher"] for r in on[-3:]) < sum(r["kl_teacher"] for r in on[:3])


@pytest.mark.slow
def test_teacher_takes_its_share_of_a_single_gpu(tiny_model: Path, tiny_teacher: Path, toy_data: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray is told the node has one GPU and the driver that CUDA is available: the learner, the rollout worker and
    # the teacher must each hold a third of it (a teacher without a share scores on the CPU of a GPU machine; one
    # asking for a share on top of the learner's and the worker's halves never starts)
    import ray

    from distill.config import OnPolicyConfig
    from distill.onpolicy import preflight, start
    from rl.config_io import load_config

    config = _write_yaml(tmp_path / "gpu.yaml", {
        "output_dir": str(tmp_path / "run"), "student": {"path": str(tiny_model)},
        "teacher": {"path": str(tiny_teacher), "torch_threads": 1}, "data": {"train": str(toy_data)},
        "rollout": {"backend": "hf"}, "trainer": {"max_steps": 1, "torch_threads": 1}})
    cfg = load_config(OnPolicyConfig, config)
    inputs = preflight(cfg)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        run = start(cfg, inputs)
        actors = [*run.session.learner.actors, run.teacher, *run.session.rollout.workers]
        _, pending = ray.wait([a.__ray_ready__.remote() for a in actors], num_returns=len(actors), timeout=180)
        assert not pending, "an actor is waiting for GPU resources"
        gpu_ids = ray.get([a.__ray_call__.remote(lambda _: ray.get_runtime_context().get_accelerator_ids()["GPU"])
                           for a in actors])
        assert all(ids == ["0"] for ids in gpu_ids), gpu_ids  # the teacher too, not only the learner and worker
    finally:
        ray.shutdown()


def test_sft_rows_with_tools_render_the_schemas_and_train_only_the_call(tiny_model: Path, tmp_path: Path) -> None:
    """TRL's conversational format with `tools`: the prompt carries the schemas as at rollout with
    `rollout.tools`, the completion is the assistant's `<tool_call>` block; bad `tools` name the row; a template
    that drops the tools is an error, not a silent cold start without them."""
    from transformers import AutoTokenizer

    from distill.sft_data import prompt_completion, read_sft_jsonl, tokenize_pair
    from rl.chat import chat_style, use_thinking_template
    from rl.data import render_prompts
    from rl.tools import load_tools, tool_schemas

    schemas = tool_schemas(load_tools(["calculator"]))
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "12 * 34"}}}
    user = {"role": "user", "content": "What is 12 * 34?"}
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"messages": [user, {"role": "assistant", "content": "", "tool_calls": [call]}],
                                "tools": schemas}) + "\n")
    [row] = read_sft_jsonl(path)
    assert row.tools == schemas
    tok = use_thinking_template(AutoTokenizer.from_pretrained(tiny_model))
    prompt, completion = prompt_completion(row.messages, tok, chat_style(tok), row.tools)
    [rollout_prompt], _ = render_prompts([{"prompt": [user]}], tok, system_prompt=None, think_mode="no_think",
                                         think_prob=0.0, seed=0, tools=schemas)
    assert prompt == rollout_prompt and '"name": "calculator"' in prompt
    assert completion == ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "12 * 34"}}\n'
                          "</tool_call>" + tok.eos_token)
    # trained on the prompt's ids as the engine gets them, even where BPE merges across the boundary (as SmolLM2's
    # `\n\n` of the no-think prefill does with the completion's first character)
    merged = next(t for t in tok.get_vocab() if t.isalpha() and t.isascii() and len(t) >= 3
                  and tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)])
    left, right = prompt + merged[0], merged[1:] + completion
    engine_prompt = tok(left, add_special_tokens=False)["input_ids"]
    assert tok(left + right, add_special_tokens=False)["input_ids"][: len(engine_prompt)] != engine_prompt
    example = tokenize_pair(tok, left, right)
    assert example["input_ids"][: len(engine_prompt)] == engine_prompt
    assert example["completion_mask"] == [0] * len(engine_prompt) + [1] * (len(example["input_ids"]) - len(engine_prompt))

    path.write_text(json.dumps({"messages": row.messages, "tools": [{"name": "calculator"}]}) + "\n")
    with pytest.raises(ValueError, match="row 1: `tools` must be a list of JSON schemas"):
        read_sft_jsonl(path)
    chatml = AutoTokenizer.from_pretrained(tiny_model)
    chatml.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(ValueError, match="ignores `tools`.*data.thinking_template"):
        prompt_completion(row.messages, chatml, None, row.tools)
    with pytest.raises(ValueError, match="ignores `tools`"):
        render_prompts([{"prompt": [user]}], chatml, system_prompt=None, think_mode="off", think_prob=0.0, seed=0,
                       tools=schemas)
