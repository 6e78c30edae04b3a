"""On-policy distillation: `python -m distill.onpolicy --config c.yaml [key=value ...]` (`--help`, `--check`).

Qwen3's second distillation phase (and "On-Policy Distillation", Thinking Machines 2025). One step: take
`data.prompts_per_step` prompts → the student's rollout workers (vLLM or HF, the weights of the current student)
sample `rollout.n` completions each in the configured chat mode, with their sampling logprobs → the teacher (a
Ray actor holding the frozen teacher) scores the same token sequences: log T of each sampled token, its top-k
tokens + tail mass, or its full distribution → rewards, if configured, score the completions → the learner
(`distill.learner.DistillLearner`) minimises `loss.type`:
- `sampled_kl`: per-token advantage −(log S(x_t) − log T(x_t)) in the PPO-clip policy-gradient loss;
- `full_kl`: KL(S‖T) over the vocabulary (or top-k + tail buckets) at every sampled position;
- `gkd`: generalized JSD_β; a step is on-policy with probability λ = `loss.on_policy_fraction`, otherwise the
  teacher generates the completions (seeded per step, so a resumed run makes the same choices);
plus `loss.reward_weight` × the GRPO policy-gradient loss on the task rewards → new weights go to the rollout
engines → metrics (`kl_teacher`: mean per-token log S(x_t) − log T(x_t) over the sampled tokens, an unbiased
estimate of KL(S‖T); `top1_agreement`; rewards) are logged, checkpoints written as by `rl.grpo`, and re-running
the same command resumes. Teacher and student must share a tokenizer (checked before anything loads).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import OnPolicyConfig
from rl.config_io import build_arg_parser, run_cli
from rl.session import RunInputs, Session, load_run_inputs
from rl.tracking import eval_text


@dataclass
class Inputs(RunInputs):
    """`RunInputs` and both models' resolved paths, validated before any model loads."""

    student_path: str = ""
    teacher_path: str = ""


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m distill.onpolicy", OnPolicyConfig, __doc__.split("\n\n")[0])
    loaded = run_cli(parser, OnPolicyConfig, argv, preflight, lambda cfg, inputs: (
        f"{len(inputs.rows)} training prompts, loss {cfg.loss.type}, student {cfg.student.path}, "
        f"teacher {cfg.teacher.path} (same vocabulary)"))
    if loaded:
        train(*loaded)


def preflight(cfg: OnPolicyConfig) -> Inputs:
    """Fail fast: model paths, the shared vocabulary (tokenizer files only), the weight-sync backend's GPUs, data
    rows, rewards and their columns."""
    from distill.common import check_student_teacher

    student_path, teacher_path = check_student_teacher(cfg.student.path, cfg.teacher.path)
    run = load_run_inputs(cfg, student_path)
    return Inputs(run.rows, run.eval_rows, run.rewards, run.prompts, student_path=student_path, teacher_path=teacher_path)


@dataclass
class Distillation:
    """The run's live pieces (`rl.session.Session`) and the teacher actor beside them."""

    session: Session
    teacher: Any


def start(cfg: OnPolicyConfig, inputs: Inputs) -> Distillation:
    """The session with the distillation learner, and the teacher actor beside learner rank 0 (sharing its GPU,
    if any: the session's `extra_gpu_tenants`)."""
    from distill.actors import GPU_TENANTS, start_teacher
    from distill.learner import DistillLearner

    session = Session(cfg, inputs, model=cfg.student, model_path=inputs.student_path, learner_cls=DistillLearner,
                      learner_kwargs={"loss_cfg": cfg.loss}, extra_gpu_tenants=GPU_TENANTS)
    teacher = start_teacher(inputs.teacher_path, cfg.teacher, options=session.placement.extra(),
                            temperature=cfg.rollout.temperature, top_k=cfg.loss.top_k or 1, seed=cfg.trainer.seed)
    return Distillation(session, teacher)


def train(cfg: OnPolicyConfig, inputs: Inputs) -> None:
    from rl.tracking import eval_summary, text_curve

    run = start(cfg, inputs)
    session = run.session

    def describe(r: dict) -> str:
        return "distill" + (f" KL {r['kl_teacher']:.3f}" if r.get("kl_teacher") is not None else "")

    records = session.run(lambda step: distill_step(run, step), title="distill", describe=describe, line=step_line)
    plot_distill_curves(records, session.out / "curves.png")
    session.console.print("KL to the teacher per step:\n" + text_curve(records, key="kl_teacher"))
    if summary := eval_summary(records):
        session.console.print(summary)
    session.close()


def distill_step(run: Distillation, step: int) -> dict[str, Any]:
    """rollout (student, or teacher on GKD's off-policy steps) → teacher scores → rewards → update → sync."""
    import ray

    session = run.session
    cfg = session.cfg
    t0 = time.perf_counter()
    prompts = session.stream.take(cfg.data.prompts_per_step)
    rows_idx = [i for i in prompts for _ in range(cfg.rollout.n)]
    on_policy = is_on_policy_step(cfg, step)
    completions = sample_step(run, [session.train_set.ids[i] for i in prompts], on_policy)
    t1 = time.perf_counter()
    prompt_ids = [session.train_set.ids[i] for i in rows_idx]
    full = cfg.loss.type != "sampled_kl" and cfg.loss.top_k is None
    scores_ref, dense_ref = run.teacher.score.options(num_returns=2).remote(
        prompt_ids, [c.token_ids for c in completions], full)
    rewards, reward_metrics = [0.0] * len(completions), {}
    if session.rewards.specs:
        graded = session.score(session.train_set, rows_idx, completions, step)
        rewards, reward_metrics = graded.totals, graded.metrics
    scores = ray.get(scores_ref)
    t2 = time.perf_counter()
    batch = make_batch(cfg, prompt_ids, completions, scores, rewards, on_policy)
    with session.learner_turn():
        train_metrics = session.learner.call("train_distill", batch, step, dense_ref)
    t3 = time.perf_counter()
    session.push_weights()
    t4 = time.perf_counter()
    times = {"time_step_s": t4 - t0, "time_rollout_s": t1 - t0, "time_teacher_reward_s": t2 - t1,
             "time_train_s": t3 - t2, "time_sync_s": t4 - t3}
    record = {"step": step, "on_policy": float(on_policy), **train_metrics,
              **completion_metrics(completions, scores, rewards if session.rewards.specs else None, on_policy),
              **times, **reward_metrics}
    return record


def is_on_policy_step(cfg: OnPolicyConfig, step: int) -> bool:
    """GKD's λ: on-policy with probability `on_policy_fraction`, drawn from (seed, step) so resuming repeats it."""
    fraction = getattr(cfg.loss, "on_policy_fraction", 1.0)
    return fraction >= 1.0 or random.Random(cfg.trainer.seed * 1_000_003 + step).random() < fraction


def sample_step(run: Distillation, prompt_ids: list[list[int]], on_policy: bool) -> list:
    """`rollout.n` completions per prompt, flattened: the student's (through the thinking budget if one is set),
    or on GKD's off-policy steps the teacher's own samples."""
    import ray

    from rl.rollout import SamplingSpec

    session = run.session
    r = session.cfg.rollout
    spec = SamplingSpec(n=r.n, max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p)
    if on_policy:
        return session.sample(prompt_ids, spec)
    spec = SamplingSpec(n=r.n, max_new_tokens=session.max_completion_tokens, temperature=r.temperature,
                        top_p=r.top_p)
    return [c for group in ray.get(run.teacher.generate.remote(prompt_ids, spec)) for c in group]


def make_batch(cfg: OnPolicyConfig, prompt_ids: list[list[int]], completions: list, scores: list,
               rewards: list[float | None], on_policy: bool):
    """The learner's batch: per-token advantages (sampled reverse KL and/or weighted GRPO advantages; zero on
    off-policy steps, where a policy gradient would be wrong) and the teacher's top-k / tail / index extras."""
    import torch

    from distill.losses import sampled_kl_advantages
    from rl.algos import ADVANTAGES, scored_advantages
    from rl.batching import pad_rows
    from rl.learner import TrainBatch

    loss, algo = cfg.loss, cfg.algorithm
    masks = [c.loss_mask or [1] * len(c.token_ids) for c in completions]
    old = [c.logprobs for c in completions]
    mask_t = pad_rows(masks, torch.float32)
    adv = torch.zeros_like(mask_t)
    if on_policy and loss.type == "sampled_kl":
        teacher = pad_rows([s.logprobs for s in scores], torch.float32)
        adv = adv + sampled_kl_advantages(pad_rows(old, torch.float32), teacher, mask_t, kl_coef=loss.kl_coef)
    if on_policy and loss.reward_weight > 0:
        rewards_t = torch.tensor([float("nan") if r is None else r for r in rewards], dtype=torch.float32)
        grpo = scored_advantages(ADVANTAGES[algo.advantage], rewards_t, cfg.rollout.n, algo.std_eps)
        adv = adv + loss.reward_weight * grpo[:, None] * mask_t
    extras = {"teacher_topk_ids": [s.topk_ids for s in scores],
              "teacher_topk_logprobs": [s.topk_logprobs for s in scores],
              "teacher_tail_logprob": [s.tail_logprob for s in scores],
              "seq_index": [[i] * len(c.token_ids) for i, c in enumerate(completions)]}
    return TrainBatch(prompt_ids, [c.token_ids for c in completions], old, [0.0] * len(completions),
                      loss_masks=masks, token_advantages=[adv[i, : len(m)].tolist() for i, m in enumerate(masks)],
                      extras=extras, group_size=cfg.rollout.n)


def completion_metrics(completions: list, scores: list, rewards: list[float | None] | None, on_policy: bool) -> dict:
    """`kl_teacher` (on student samples: Σ mask·(log S − log T) / Σ mask, with the sampler's log S), lengths,
    truncation, and the reward mean/std over the scored completions when rewards are configured."""
    num = sum(sum(c.loss_mask or [1] * len(c.token_ids)) for c in completions)
    record: dict[str, Any] = {
        "response_len_mean": sum(len(c.token_ids) for c in completions) / len(completions),
        "truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }
    if on_policy:
        gap = sum(m * (s_lp - t_lp) for c, s in zip(completions, scores)
                  for m, s_lp, t_lp in zip(c.loss_mask or [1] * len(c.token_ids), c.logprobs, s.logprobs))
        record["kl_teacher"] = gap / max(num, 1)
    scored = [r for r in rewards or [] if r is not None]
    if scored:
        mean = sum(scored) / len(scored)
        record["reward_mean"] = mean
        record["reward_std"] = (sum((r - mean) ** 2 for r in scored) / max(len(scored) - 1, 1)) ** 0.5
    return record


def plot_distill_curves(records: list[dict], path: Path) -> None:
    """KL to the teacher, top-1 agreement, and reward / held-out accuracy when measured, vs step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("kl_teacher", "KL(student‖teacher) per token"), ("top1_agreement", "teacher–student top-1 agreement")]
    if any(r.get("reward_mean") is not None or r.get("eval_accuracy") is not None for r in records):
        panels.append(("reward_mean", "reward / held-out accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, title) in zip(axes, panels):
        keys = [key, "eval_accuracy"] if key == "reward_mean" else [key]
        for k in keys:
            points = [(r["step"], r[k]) for r in records if r.get(k) is not None]
            if points:
                ax.plot(*zip(*points), marker="o" if k == "eval_accuracy" else None, label=k)
        ax.set_xlabel("step")
        ax.set_title(title)
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def step_line(r: dict) -> str:
    """The console line of one step."""
    parts = [f"step {r['step']}:"]
    if r.get("kl_teacher") is not None:
        parts.append(f"KL {r['kl_teacher']:.3f}")
    else:
        parts.append("(teacher samples)")
    parts.append(f"top1 {r['top1_agreement']:.3f}")
    if "distill_loss" in r:
        parts.append(f"loss {r['distill_loss']:.3f}")
    if "reward_mean" in r:
        parts.append(f"reward {r['reward_mean']:.3f}")
    parts.append(f"len {r['response_len_mean']:.1f} {r['time_step_s']:.1f}s (rollout {r['time_rollout_s']:.1f} "
                 f"teacher+reward {r['time_teacher_reward_s']:.1f} train {r['time_train_s']:.1f} "
                 f"sync {r['time_sync_s']:.2f})")
    line = " ".join(parts)
    return line + eval_text(r)


if __name__ == "__main__":
    main()
