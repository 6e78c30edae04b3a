"""GRPO: `python -m rl.grpo --config my.yaml [key=value ...]` (`--help` lists every key, `--check` validates).

One step: take `data.prompts_per_step` prompts → the rollout workers sample `rollout.n` completions each, with
the sampler's per-token logprobs (π_old) → rewards score them (weighted sum of the configured functions) →
group-normalised advantages A_i = (r_i − mean) / (std + eps) → the learner takes `trainer.updates_per_batch`
AdamW steps on the PPO-clip loss, token-mean over the global batch, plus β·KL(k3) to the frozen start model when
`algorithm.kl_beta` > 0 → the new weights go to every rollout engine → metrics are logged, and a checkpoint is
written every `trainer.save_every` steps. Re-running the same command resumes from the last checkpoint.
Formulas: docs/ALGORITHMS.md (#advantages, #ppo-clip-token-loss, #loss-aggregation, #kl-estimators,
#dynamic-sampling); the maths lives in `rl/algos/`, the run's live pieces in `rl/session.py`.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from rl.config import GRPOConfig
from rl.config_io import build_arg_parser, run_cli
from rl.models import check_model_path, resolve_model_path
from rl.rollout.multiturn import tool_metrics
from rl.session import RunInputs, Session, load_run_inputs
from rl.tracking import eval_text


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m rl.grpo", GRPOConfig, __doc__.split("\n\n")[0])
    loaded = run_cli(parser, GRPOConfig, argv, preflight, lambda cfg, inputs: (
        f"{len(inputs.rows)} training prompts, {len(cfg.rewards)} reward(s), model {cfg.model.path}"))
    if loaded:
        train(*loaded)


def preflight(cfg: GRPOConfig) -> RunInputs:
    """Fail fast, naming the bad key / file / row: model path, data rows, reward functions and their columns."""
    check_model_path(cfg.model.path)
    return load_run_inputs(cfg, cfg.model.path)


def train(cfg: GRPOConfig, inputs: RunInputs) -> None:
    from rl.tracking import eval_summary, plot_curves, text_curve

    session = Session(cfg, inputs, model=cfg.model, model_path=resolve_model_path(cfg.model.path))
    pending: Future | None = None  # max_staleness 1: the next step's rollout, sampled while the learner trains

    def step_fn(step: int) -> dict:
        nonlocal pending
        record, pending = grpo_step(session, step, pending)
        return record

    records = session.run(step_fn, title="GRPO", describe=lambda r: f"GRPO reward {_num(r['reward_mean'])}",
                          line=step_line)
    plot_curves(records, session.out / "curves.png")
    session.console.print("reward per step:\n" + text_curve(records))
    if summary := eval_summary(records):
        session.console.print(summary)
    session.close()


@dataclass
class Rollout:
    """One step's sampled and scored completions: all of them (for metrics) and the groups kept for training."""

    rows_idx: list[int]  # row of each sampled completion (groups of rollout.n contiguous)
    completions: list
    rewards: list[float | None]  # None: unscored (a reward failed to grade it)
    keep: list[bool]  # per completion: its group goes into the training batch
    reward_metrics: dict
    rounds: int
    time_rollout_s: float
    time_reward_s: float


def grpo_step(session: Session, step: int, pending: Future | None = None) -> tuple[dict[str, float], Future | None]:
    """rollout → reward → advantage → update → sync; returns this step's metrics and, with
    `rollout.max_staleness: 1`, the next step's rollout already under way."""

    cfg = session.cfg
    t0 = time.perf_counter()
    rollout = pending.result() if pending is not None else collect(session, step)
    batch, batch_metrics = make_batch(session, rollout)
    t_train = time.perf_counter()
    with session.learner_turn():
        training = session.learner.submit("train", batch, step)
        pending, session.before_prefetch = None, None
        if cfg.rollout.max_staleness and step < cfg.trainer.max_steps:
            pending = session.prefetch(collect, session, step + 1)
        train_metrics = training.result()
    t_sync = time.perf_counter()
    session.push_weights()  # waits for a prefetching engine to finish first
    t_end = time.perf_counter()
    times = {"time_step_s": t_end - t0, "time_rollout_s": rollout.time_rollout_s,
             "time_reward_s": rollout.time_reward_s, "time_train_s": t_sync - t_train, "time_sync_s": t_end - t_sync,
             "train_tokens_per_s": (batch.num_completion_tokens + sum(map(len, batch.prompt_ids)))
             * cfg.trainer.updates_per_batch / (t_sync - t_train)}
    modes = [session.train_set.modes[i] for i in rollout.rows_idx]
    record = step_metrics(torch_tensor(rollout.rewards), cfg.rollout.n, rollout.completions, modes, train_metrics,
                          times)  # unscored completions (NaN) are left out of the reward statistics
    return {"step": step, **record, **batch_metrics, **rollout.reward_metrics}, pending


def collect(session: Session, step: int) -> Rollout:
    """Sample `rollout.n` completions for `data.prompts_per_step` prompts and score them. With dynamic sampling,
    groups whose rewards are all equal are left out of training and further prompts are sampled (over-sampled by
    the informative rate seen so far) until the step has `prompts_per_step` informative groups or the rounds run out."""
    from rl.algos import informative_groups
    from rl.rollout import SamplingSpec

    cfg, n = session.cfg, session.cfg.rollout.n
    algo, want = cfg.algorithm, cfg.data.prompts_per_step
    spec = SamplingSpec(n=n, max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                        top_p=cfg.rollout.top_p)
    out = Rollout([], [], [], [], {}, 0, 0.0, 0.0)
    parts: list[tuple[dict, int]] = []
    kept_groups = 0
    for _ in range(algo.dynamic_sampling_rounds if algo.dynamic_sampling else 1):
        missing = want - kept_groups
        if missing == 0:
            break
        sampled_groups = len(out.rows_idx) // n
        rate = max(kept_groups / sampled_groups, 0.25) if sampled_groups else 1.0
        prompts = session.stream.take(missing if not sampled_groups else min(-(-missing // rate), 4 * missing))
        rows_idx = [i for i in prompts for _ in range(n)]
        t0 = time.perf_counter()
        completions = session.sample([session.train_set.ids[i] for i in prompts], spec,
                                     [session.train_set.rows[i] for i in prompts])
        t1 = time.perf_counter()
        scores = session.score(session.train_set, rows_idx, completions, step)
        rewards, metrics = scores.totals, scores.metrics
        out.time_rollout_s += t1 - t0
        out.time_reward_s += time.perf_counter() - t1
        informative = informative_groups(torch_tensor(rewards), n).tolist() if algo.dynamic_sampling else \
            [True] * len(prompts)
        for useful in informative:
            take = useful and kept_groups < want
            kept_groups += take
            out.keep += [take] * n
        out.rows_idx += rows_idx
        out.completions += completions
        out.rewards += rewards
        out.rounds += 1
        parts.append((metrics, len(completions)))
    if not any(out.keep):  # nothing informative: train on the last round (zero advantages; entropy/KL terms only)
        out.keep[-len(completions):] = [True] * len(completions)
    out.reward_metrics = _merge_reward_metrics(parts)
    if algo.dynamic_sampling:
        out.reward_metrics.update({"dynamic/rounds": out.rounds, "dynamic/kept_groups": kept_groups,
                                   "dynamic/sampled_groups": len(out.rows_idx) // n})
    return out


def make_batch(session: Session, rollout: Rollout) -> tuple[Any, dict[str, float]]:
    """The training batch of the kept groups: loss masks (inserted budget text, overlong masking), the KL reward
    penalty when `algorithm.kl_mode: reward`, and the advantages."""

    from rl.algos import ADVANTAGES, scored_advantages
    from rl.learner import TrainBatch

    cfg, algo = session.cfg, session.cfg.algorithm
    kept = [k for k, keep in enumerate(rollout.keep) if keep]
    comps = [rollout.completions[k] for k in kept]
    masks = [c.loss_mask or [1] * len(c.token_ids) for c in comps]
    unscored = [rollout.rewards[k] is None for k in kept]
    if algo.mask_truncated or any(unscored):  # overlong masking; an unscored completion carries no loss either
        masks = [[0] * len(m) if (algo.mask_truncated and c.finish_reason == "length") or missing else m
                 for c, m, missing in zip(comps, masks, unscored)]
    # a trajectory whose environment changed its prompt (`reset`) carries its own prompt ids
    prompt_ids = [getattr(c, "prompt_ids", None) or session.train_set.ids[rollout.rows_idx[k]]
                  for k, c in zip(kept, comps)]
    batch = TrainBatch(prompt_ids, [c.token_ids for c in comps],
                       [c.logprobs for c in comps], [0.0] * len(kept), loss_masks=masks, group_size=cfg.rollout.n)
    rewards = torch_tensor([rollout.rewards[k] for k in kept])
    metrics: dict[str, float] = {}
    if algo.kl_mode == "reward":
        penalty = torch_tensor(session.learner.call("reference_kl", batch))
        rewards = rewards - algo.kl_beta * penalty
        metrics["kl_reward_penalty"] = (algo.kl_beta * penalty).mean().item()
    batch.advantages = scored_advantages(ADVANTAGES[algo.advantage], rewards, cfg.rollout.n, algo.std_eps).tolist()
    return batch, metrics


def _merge_reward_metrics(parts: list[tuple[dict, int]]) -> dict:
    """Per-reward metrics of several scoring rounds: counts and times add up, means are weighted by completions."""
    if len(parts) == 1:
        return parts[0][0]
    total = sum(count for _, count in parts)
    merged: dict[str, float] = {}
    for metrics, count in parts:
        for key, value in metrics.items():
            if value is None:
                continue
            additive = key.endswith(("/errors", "/time_s"))
            merged[key] = merged.get(key, 0.0) + (value if additive else value * count / total)
    return merged


def torch_tensor(values: list[float | None]):
    """float32 tensor; None (an unscored completion) becomes NaN."""
    import torch

    return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float32)


def step_metrics(rewards, n: int, completions: list, modes: list[str], train: dict, times: dict) -> dict:
    """The per-step record (`metrics.jsonl` keys) from rewards [B*G] (NaN: unscored, left out), completions and
    the learner's metrics."""
    import torch

    from rl.algos import group_reward_std, informative_groups

    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    scored = rewards[~torch.isnan(rewards)]
    record = {
        "reward_mean": scored.mean().item() if len(scored) else None,
        "reward_std": scored.std().item() if len(scored) > 1 else None,
        "reward_group_std": group_reward_std(rewards, n), "kl_ref": None, **train,
        "response_len_mean": lengths.mean().item(),
        "truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
        "zero_adv_group_frac": 1.0 - informative_groups(rewards, n).float().mean().item(),
        "rollout_tokens_per_s": lengths.sum().item() / times["time_rollout_s"], **times,
    }
    if any(hasattr(c, "budget_hit") for c in completions):
        record["budget_hit_frac"] = sum(getattr(c, "budget_hit", False) for c in completions) / len(completions)
    if any(hasattr(c, "tool_calls") for c in completions):
        record.update(tool_metrics(completions))
    for mode in sorted(set(modes) - {"off"}):
        picked = [i for i, m in enumerate(modes) if m == mode]
        record[f"reward_mean/{mode}"] = rewards[picked].nanmean().item()
        record[f"response_len_mean/{mode}"] = lengths[picked].mean().item()
    return record


def step_line(r: dict) -> str:
    """The console line of one step."""
    line = (f"step {r['step']}: reward {_num(r['reward_mean'])}±{_num(r['reward_std'])} entropy {_num(r['entropy'])} "
            f"len {r['response_len_mean']:.1f} clip {r['clip_frac']:.3f} {r['time_step_s']:.1f}s "
            f"(rollout {r['time_rollout_s']:.1f} train {r['time_train_s']:.1f} sync {r['time_sync_s']:.2f})")
    if r.get("skipped_update_frac"):
        line += f" skipped {r['skipped_update_frac']:.0%} of updates (non-finite)"
    if r.get("reward/unscored_frac"):
        line += f" unscored {r['reward/unscored_frac']:.0%}"
    if "tools/calls_mean" in r:
        line += f" tools {r['tools/calls_mean']:.2f}/sample (err {r['tools/error_rate']:.0%})"
    return line + eval_text(r)


def _num(value: float | None) -> str:
    """A metric for the console: 3 decimals, `n/a` when it could not be measured (no scored completion, NaN)."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


if __name__ == "__main__":
    main()
