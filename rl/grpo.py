"""GRPO: `python -m rl.grpo --config my.yaml [key=value ...]` (`--help` lists every key, `--check` validates).

One step: take `data.prompts_per_step` prompts → the rollout workers sample `rollout.n` completions each, with
the sampler's per-token logprobs (π_old) → rewards score them (weighted sum of the configured functions) →
group-normalised advantages A_i = (r_i − mean) / (std + eps) → the learner takes `trainer.updates_per_batch`
AdamW steps on the PPO-clip loss, token-mean over the global batch, plus β·KL(k3) to the frozen start model when
`algorithm.kl_beta` > 0 → the new weights go to every rollout engine → metrics are logged, and a checkpoint is
written every `trainer.save_every` steps. Re-running the same command resumes from the last checkpoint.
Formulas: ALGORITHMS.md; the maths lives in `rl/algos/`.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config import GRPOConfig
from rl.config_io import ConfigError, build_arg_parser, dump_config, load_config
from rl.data import DataError, PromptStream, load_rows, render_prompts
from rl.models import check_model_path, resolve_model_path


@dataclass
class Inputs:
    """Everything validated before any model loads."""

    rows: list[dict]
    eval_rows: list[dict]
    rewards: Any  # rewards.WeightedRewards
    primary_reward: str


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m rl.grpo", GRPOConfig, __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        cfg = load_config(GRPOConfig, args.config, args.overrides)
        inputs = preflight(cfg)
    except (ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        print(f"config ok: {len(inputs.rows)} training prompts, {len(cfg.rewards)} reward(s), model {cfg.model.path}")
        return
    train(cfg, inputs)


def preflight(cfg: GRPOConfig) -> Inputs:
    """Fail fast, naming the bad key / file / row: model path, data rows, reward functions and their columns."""
    from rl.weight_sync import check_weight_sync

    check_model_path(cfg.model.path)
    check_weight_sync(cfg.rollout)
    rows = load_rows(cfg.data.train)
    eval_rows = load_rows(cfg.eval.data)[: cfg.eval.max_prompts] if cfg.eval else []
    specs = reward_specs(cfg.rewards, [rows, eval_rows])
    rewards = weighted_rewards(specs)
    return Inputs(rows, eval_rows, rewards, primary_reward=specs[0].label)


def reward_specs(reward_cfgs: list, row_sets: list[list[dict]]) -> list:
    """`rewards.RewardSpec` of each `rewards:` entry, its columns checked against every (non-empty) row set it
    will see; errors name `rewards.<i>`."""
    from rewards import DRIVER_COLUMNS, build_spec

    columns = [(set().union(*rs) - {"prompt"}) | DRIVER_COLUMNS for rs in row_sets if rs]
    specs = []
    for i, r in enumerate(reward_cfgs):
        try:
            spec = build_spec(name=r.name, fn=r.fn, judge=r.judge, model=r.model, weight=r.weight,
                              kwargs=r.kwargs, on_error=r.on_error, label=r.label, worker=r.worker)
            for available in columns:
                spec.check_columns(available)
        except ValueError as e:
            raise ConfigError(f"rewards.{i}: {e}") from None
        specs.append(spec)
    return specs


def weighted_rewards(specs: list):
    """The weighted sum of the specs (`rewards.WeightedRewards`); a clash between them names `rewards`."""
    from rewards import WeightedRewards

    try:
        return WeightedRewards(specs)
    except ValueError as e:
        raise ConfigError(f"rewards: {e}") from None


@dataclass
class PromptSet:
    """Rows with their rendered prompt text, token ids and chat mode, computed once at start-up."""

    rows: list[dict]
    texts: list[str]
    ids: list[list[int]]
    modes: list[str]


class Run:
    """The live pieces of a run: tokenizer, encoded prompts, data cursor, Ray actors, metrics log."""

    def __init__(self, cfg: GRPOConfig, inputs: Inputs):
        from transformers import AutoTokenizer

        from rl.actors import RolloutGroup, init_ray, start_learner
        from rl.checkpoint import latest_checkpoint, load_state
        from rl.tracking import MetricsLog
        from rl.weight_sync import make_weight_sync

        self.cfg, self.inputs, self.out = cfg, inputs, Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.out / "config.yaml")
        model_path = resolve_model_path(cfg.model.path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if cfg.data.thinking_template:
            from rl.chat import use_thinking_template

            use_thinking_template(self.tokenizer)
        self.train_set = encode_prompts(inputs.rows, self.tokenizer, cfg, cfg.data.train)
        self.eval_set = encode_prompts(inputs.eval_rows, self.tokenizer, cfg, cfg.eval.data if cfg.eval else "")
        self.budget = None
        if cfg.rollout.thinking_budget is not None:
            from rl.rollout.budget import thinking_budget_for

            self.budget = thinking_budget_for(self.tokenizer, cfg.rollout.thinking_budget, cfg.rollout.max_answer_tokens)
        self.max_completion_tokens = self.budget.max_completion_tokens if self.budget else cfg.rollout.max_new_tokens
        checkpoint = latest_checkpoint(self.out)
        state = load_state(checkpoint) if checkpoint else {}
        self.start_step = state.get("step", 0)
        self.stream = PromptStream(len(inputs.rows), seed=cfg.trainer.seed, shuffle=cfg.data.shuffle)
        if state:
            self.stream.load_state_dict(state["data"])
        init_ray(cfg.ray_address)
        self.weight_sync = make_weight_sync(cfg.rollout)
        self.learner = start_learner(model_path, cfg.model, cfg.trainer, cfg.algorithm, cfg.rollout.temperature,
                                     resume_from=str(checkpoint) if checkpoint else None,
                                     max_completion_tokens=self.max_completion_tokens, num_workers=cfg.rollout.workers)
        longest = max(len(p) for p in self.train_set.ids + self.eval_set.ids)
        self.rollout = RolloutGroup(cfg.rollout.workers, cfg.rollout.backend, dict(
            model_path=model_path, dtype=cfg.model.dtype, seed=cfg.trainer.seed,
            max_model_len=longest + max(self.max_completion_tokens, (cfg.eval.max_new_tokens or 0) if cfg.eval else 0),
            kv_cache_gib=cfg.rollout.kv_cache_gib, gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
            enforce_eager=cfg.rollout.enforce_eager, **self.weight_sync.engine_kwargs))
        self.weight_sync.connect(self.learner, self.rollout.workers)
        if checkpoint:
            self.weight_sync.push()
        self.log = MetricsLog(self.out, cfg.tensorboard, resume_step=self.start_step)
        self.resumed_from = checkpoint
        # one-step off-policy: the next rollout runs in this thread while the learner trains; checkpoints then
        # record the data cursor from before the prefetched prompts (`stream_checkpoint`), so none is lost.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout")
        self.stream_checkpoint: dict | None = None


def encode_prompts(rows: list[dict], tokenizer: Any, cfg: GRPOConfig, source: str) -> PromptSet:
    """Render (chat template / Qwen3 modes) and tokenize every prompt; too-long prompts are an error."""
    d = cfg.data
    texts, modes = render_prompts(rows, tokenizer, system_prompt=d.system_prompt, think_mode=d.think_mode,
                                  think_prob=d.think_prob, seed=cfg.trainer.seed)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    for i, p in enumerate(ids, start=1):
        if len(p) > d.max_prompt_tokens:
            raise DataError(f"{source}: row {i} prompt is {len(p)} tokens > data.max_prompt_tokens={d.max_prompt_tokens}")
    return PromptSet(rows, texts, ids, modes)


def train(cfg: GRPOConfig, inputs: Inputs) -> None:
    import ray

    from rl.tracking import plot_curves, text_curve

    run = Run(cfg, inputs)
    console = _console()
    if run.resumed_from:
        console.print(f"resuming from {run.resumed_from} (step {run.start_step})")
    elif cfg.eval:
        run.log.log({"step": 0, **evaluate(run)})
        console.print(f"step 0: held-out accuracy {run.log.records[-1]['eval_accuracy']:.3f}")
    pending = None  # max_staleness 1: the next step's rollout, sampled while the learner trains
    with _progress(console) as progress:
        task = progress.add_task("GRPO", total=cfg.trainer.max_steps, completed=run.start_step)
        for step in range(run.start_step + 1, cfg.trainer.max_steps + 1):
            record, pending = grpo_step(run, step, pending)
            if cfg.eval and (step == cfg.trainer.max_steps or (cfg.eval.every and step % cfg.eval.every == 0)):
                record.update(evaluate(run))
            run.log.log(record)
            if step % cfg.trainer.save_every == 0 or step == cfg.trainer.max_steps:
                save(run, step)
            progress.update(task, advance=1, description=f"GRPO reward {record['reward_mean']:.3f}")
            console.print(_step_line(record))
    run.log.close()
    plot_curves(run.log.records, run.out / "curves.png")
    console.print("reward per step:\n" + text_curve(run.log.records))
    _print_eval_summary(console, run.log.records)
    ray.shutdown()


@dataclass
class Rollout:
    """One step's sampled and scored completions: all of them (for metrics) and the groups kept for training."""

    rows_idx: list[int]  # row of each sampled completion (groups of rollout.n contiguous)
    completions: list
    rewards: list[float]
    keep: list[bool]  # per completion: its group goes into the training batch
    reward_metrics: dict
    rounds: int
    time_rollout_s: float
    time_reward_s: float


def grpo_step(run: Run, step: int, pending: Future | None = None) -> tuple[dict[str, float], Future | None]:
    """rollout → reward → advantage → update → sync; returns this step's metrics and, with
    `rollout.max_staleness: 1`, the next step's rollout already under way."""
    import ray

    cfg = run.cfg
    t0 = time.perf_counter()
    rollout = pending.result() if pending is not None else collect(run, step)
    batch, batch_metrics = make_batch(run, rollout)
    t_train = time.perf_counter()
    train_ref = run.learner.train.remote(batch, step)
    pending, run.stream_checkpoint = None, None
    if cfg.rollout.max_staleness and step < cfg.trainer.max_steps:
        run.stream_checkpoint = run.stream.state_dict()  # before the prefetched prompts are taken
        pending = run.executor.submit(collect, run, step + 1)
    train_metrics = ray.get(train_ref)
    t_sync = time.perf_counter()
    run.weight_sync.push()  # waits for a prefetching engine to finish first
    t_end = time.perf_counter()
    times = {"time_step_s": t_end - t0, "time_rollout_s": rollout.time_rollout_s,
             "time_reward_s": rollout.time_reward_s, "time_train_s": t_sync - t_train, "time_sync_s": t_end - t_sync,
             "train_tokens_per_s": (batch.num_completion_tokens + sum(map(len, batch.prompt_ids)))
             * cfg.trainer.updates_per_batch / (t_sync - t_train)}
    modes = [run.train_set.modes[i] for i in rollout.rows_idx]
    record = step_metrics(torch_tensor(rollout.rewards), cfg.rollout.n, rollout.completions, modes, train_metrics,
                          times)
    return {"step": step, **record, **batch_metrics, **rollout.reward_metrics}, pending


def collect(run: Run, step: int) -> Rollout:
    """Sample `rollout.n` completions for `data.prompts_per_step` prompts and score them. With dynamic sampling,
    groups whose rewards are all equal are left out of training and further prompts are sampled (over-sampled by
    the informative rate seen so far) until the step has `prompts_per_step` informative groups or the rounds run out."""
    from rl.algos import informative_groups
    from rl.rollout import SamplingSpec

    cfg, n = run.cfg, run.cfg.rollout.n
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
        prompts = run.stream.take(missing if not sampled_groups else min(-(-missing // rate), 4 * missing))
        rows_idx = [i for i in prompts for _ in range(n)]
        t0 = time.perf_counter()
        completions = sample(run, [run.train_set.ids[i] for i in prompts], spec)
        t1 = time.perf_counter()
        rewards, metrics = score_completions(run, run.train_set, rows_idx, completions, step)
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


def make_batch(run: Run, rollout: Rollout) -> tuple[Any, dict[str, float]]:
    """The training batch of the kept groups: loss masks (inserted budget text, overlong masking), the KL reward
    penalty when `algorithm.kl_mode: reward`, and the advantages."""
    import ray

    from rl.algos import ADVANTAGES
    from rl.learner import TrainBatch

    cfg, algo = run.cfg, run.cfg.algorithm
    kept = [k for k, keep in enumerate(rollout.keep) if keep]
    comps = [rollout.completions[k] for k in kept]
    masks = [c.loss_mask or [1] * len(c.token_ids) for c in comps]
    if algo.mask_truncated:
        masks = [[0] * len(m) if c.finish_reason == "length" else m for c, m in zip(comps, masks)]
    batch = TrainBatch([run.train_set.ids[rollout.rows_idx[k]] for k in kept], [c.token_ids for c in comps],
                       [c.logprobs for c in comps], [0.0] * len(kept), loss_masks=masks, group_size=cfg.rollout.n)
    rewards = torch_tensor([rollout.rewards[k] for k in kept])
    metrics: dict[str, float] = {}
    if algo.kl_mode == "reward":
        penalty = torch_tensor(ray.get(run.learner.reference_kl.remote(batch)))
        rewards = rewards - algo.kl_beta * penalty
        metrics["kl_reward_penalty"] = (algo.kl_beta * penalty).mean().item()
    batch.advantages = ADVANTAGES[algo.advantage](rewards, cfg.rollout.n, algo.std_eps).tolist()
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


def torch_tensor(values: list[float]):
    import torch

    return torch.tensor(values, dtype=torch.float32)


def sample(run: Run, prompt_ids: list[list[int]], spec) -> list:
    """`spec.n` completions per prompt, flattened; through the thinking budget when one is configured."""
    if run.budget is None:
        groups = run.rollout.generate(prompt_ids, spec)
    else:
        from rl.rollout.budget import generate_with_budget

        groups = generate_with_budget(run.rollout, prompt_ids, spec, run.budget)
    return [c for group in groups for c in group]


def step_metrics(rewards, n: int, completions: list, modes: list[str], train: dict, times: dict) -> dict:
    """The per-step record (`metrics.jsonl` keys) from rewards [B*G], completions and the learner's metrics."""
    import torch

    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
    record = {
        "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item(), "kl_ref": None, **train,
        "response_len_mean": lengths.mean().item(),
        "truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions),
        "zero_adv_group_frac": (rewards.view(-1, n).std(dim=1) == 0).float().mean().item(),
        "rollout_tokens_per_s": lengths.sum().item() / times["time_rollout_s"], **times,
    }
    if any(hasattr(c, "budget_hit") for c in completions):
        record["budget_hit_frac"] = sum(getattr(c, "budget_hit", False) for c in completions) / len(completions)
    for mode in sorted(set(modes) - {"off"}):
        picked = [i for i, m in enumerate(modes) if m == mode]
        record[f"reward_mean/{mode}"] = rewards[picked].mean().item()
        record[f"response_len_mean/{mode}"] = lengths[picked].mean().item()
    return record


def score_completions(run: Run, prompt_set: PromptSet, rows_idx: list[int], completions: list,
                      step: int) -> tuple[list[float], dict]:
    """Decode and call the rewards with the contract's arguments: (prompts, completions, **columns), where
    columns are the rows' dataset columns plus completion_ids, step, rendered_prompt, max_completion_tokens.
    `rows_idx[k]` is the row of completion k."""
    rows = [prompt_set.rows[i] for i in rows_idx]
    texts = run.tokenizer.batch_decode([c.token_ids for c in completions], skip_special_tokens=True)
    prompts = [r["prompt"] for r in rows]
    # TRL convention: chat prompts get chat completions (a one-message list), string prompts get strings.
    comps = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]
    names = dict.fromkeys(k for r in rows for k in r if k != "prompt")
    columns = {k: [r.get(k) for r in rows] for k in names}
    columns.update(completion_ids=[c.token_ids for c in completions], step=step,
                   rendered_prompt=[prompt_set.texts[i] for i in rows_idx],
                   max_completion_tokens=run.max_completion_tokens)
    return run.inputs.rewards(prompts, comps, columns)


def evaluate(run: Run) -> dict[str, float]:
    """Greedy completion of the held-out prompts; accuracy = mean of the first reward (0/1 rewards → accuracy)."""
    from rl.rollout import SamplingSpec

    cfg = run.cfg
    spec = SamplingSpec(n=1, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, temperature=0.0)
    completions = sample(run, run.eval_set.ids, spec)
    _, metrics = score_completions(run, run.eval_set, list(range(len(completions))), completions, step=-1)
    return {"eval_accuracy": metrics[f"reward/{run.inputs.primary_reward}/mean"],
            "eval_response_len_mean": sum(len(c.token_ids) for c in completions) / len(completions)}


def save(run: Run, step: int) -> None:
    import ray

    from rl.checkpoint import save_checkpoint

    save_checkpoint(run.out, step, lambda d: ray.get(run.learner.save.remote(d)),
                    {"data": run.stream_checkpoint or run.stream.state_dict()}, keep_last=run.cfg.trainer.keep_last)


def _console():
    from rich.console import Console

    # soft_wrap: one line per step even when stdout is a pipe (CI logs), where the width defaults to 80.
    return Console(highlight=False, soft_wrap=True)


def _progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def _step_line(r: dict) -> str:
    line = (f"step {r['step']}: reward {r['reward_mean']:.3f}±{r['reward_std']:.3f} entropy {r['entropy']:.3f} "
            f"len {r['response_len_mean']:.1f} clip {r['clip_frac']:.3f} {r['time_step_s']:.1f}s "
            f"(rollout {r['time_rollout_s']:.1f} train {r['time_train_s']:.1f} sync {r['time_sync_s']:.2f})")
    return line + (f" eval_acc {r['eval_accuracy']:.3f}" if "eval_accuracy" in r else "")


def _print_eval_summary(console, records: list[dict]) -> None:
    evals = [(r["step"], r["eval_accuracy"]) for r in records if r.get("eval_accuracy") is not None]
    if len(evals) >= 2:
        console.print(f"held-out accuracy: {evals[0][1]:.3f} (step {evals[0][0]}) → {evals[-1][1]:.3f} (step {evals[-1][0]})")


if __name__ == "__main__":
    main()
