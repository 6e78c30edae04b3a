"""The live pieces of a training run, shared by every driver that trains a policy with rollout workers
(`rl.grpo`, `distill.onpolicy`): the tokenizer and the encoded prompts, the resumable data cursor, Ray with
the learner actor, the rollout workers and the weight sync between them, the rewards, the metrics log and the
console. A driver checks its inputs (`RunInputs`, built before any model loads), opens a `Session` with its
learner class, and runs its own step function in `Session.run`, which owns the loop around it: held-out
evaluation, metrics, checkpoints, progress and resuming.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config import ModelConfig, RunConfig
from rl.config_io import dump_config
from rl.data import PromptSet, PromptStream, encode_prompts, load_rows


@dataclass
class RunInputs:
    """Everything a run reads, validated before any model loads."""

    rows: list[dict]
    eval_rows: list[list[dict]]
    """The rows of each held-out set (`eval.data`), in order; none without `eval`."""
    rewards: Any  # rewards.WeightedRewards (an empty sum when `rewards:` is empty)
    prompts: tuple[PromptSet, list[PromptSet]] | None = None
    """The training and held-out prompts, rendered and tokenized, when the tokenizer was on disk at pre-flight."""
    tool_use: Any = None
    """`rl.rollout.multiturn.ToolUse` when `rollout.tools` / `rollout.environment` are set: multi-turn rollouts."""


def load_tokenizer(cfg: RunConfig, model_path: str) -> Any:
    """The policy's tokenizer, with the thinking-fusion template when `data.thinking_template` asks for it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if cfg.data.thinking_template:
        from rl.chat import use_thinking_template

        use_thinking_template(tokenizer)
    return tokenizer


def encode_run_prompts(cfg: RunConfig, tokenizer: Any, rows: list[dict], eval_rows: list[list[dict]],
                       tool_use: Any = None) -> tuple[PromptSet, list[PromptSet]]:
    """Training and held-out prompts rendered (with the tools' schemas, if any) and tokenized
    (`rl.data.encode_prompts`), each held-out set with its own system prompt: a prompt over
    `data.max_prompt_tokens` is a DataError naming the file and the row; tools with a chat template that cannot
    render tool turns are a ValueError."""
    tools = tool_use.schemas if tool_use else None
    if tool_use:
        tool_use.bind(tokenizer, enable_thinking=False if cfg.data.think_mode == "no_think" else None)
    sets = cfg.eval.sets(cfg.data.system_prompt) if cfg.eval else []
    return (encode_prompts(rows, tokenizer, cfg.data, seed=cfg.trainer.seed, source=cfg.data.train, tools=tools),
            [encode_prompts(set_rows, tokenizer, cfg.data.model_copy(update={"system_prompt": s.system_prompt}),
                            seed=cfg.trainer.seed, source=s.data, tools=tools) for s, set_rows in zip(sets, eval_rows)])


def load_run_inputs(cfg: RunConfig, model_path: str | None = None) -> RunInputs:
    """Fail fast, naming the key / file / row: a usable `output_dir` no other run holds, the GPUs the weight sync
    and the placement need, the data rows, the rewards and the dataset columns they read (checked against the
    training and the held-out rows); with the policy's `model_path` on disk, also the prompts' token lengths
    (tokenizer files only, no model)."""
    import rewards
    from rl.placement import check as check_placement
    from rl.run_lock import check_run_dir
    from rl.weight_sync import check_weight_sync

    check_run_dir(cfg.output_dir)
    check_weight_sync(cfg.rollout)
    check_placement(cfg)
    from rl.rollout.multiturn import ToolUse

    rows = load_rows(cfg.data.train)
    eval_rows = [load_rows(s.data)[: cfg.eval.max_prompts] for s in cfg.eval.sets(None)] if cfg.eval else []
    tool_use = ToolUse.load(cfg.rollout)
    scoring = rewards.from_config(cfg.rewards, [rows, *eval_rows],
                                  extra=[tool_use.environment_reward()] if tool_use and tool_use.has_environment_reward
                                  else [])
    local = _local_model_dir(model_path)
    prompts = encode_run_prompts(cfg, load_tokenizer(cfg, local), rows, eval_rows, tool_use) if local else None
    return RunInputs(rows, eval_rows, scoring, prompts, tool_use)


def _local_model_dir(path: str | None) -> str | None:
    """`path` (a model alias, directory or hub id) as a local directory if it is one already (nothing fetched)."""
    from rl.models import resolve_model_path

    if path is None:
        return None
    try:
        local = resolve_model_path(path, fetch_missing=False)
    except ValueError:
        return None
    return local if Path(local).is_dir() else None


ENTROPY_COLLAPSE = 0.1
"""A step's entropy below this fraction of the run's first is flagged (`Session._entropy_alert`)."""


class _StopRequest:
    """Within the block, the first SIGTERM / SIGINT is recorded (`signal`) for the loop to act on after the
    current step; the second one gets the default behaviour. Outside the main thread it does nothing."""

    def __init__(self):
        self.signal: signal.Signals | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum)
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class Session:
    """One run's live pieces. `model` is the policy's section (`model` / `student`) and `model_path` its resolved
    path; `learner_cls` (default `rl.learner.Learner`) gets `learner_kwargs` too; `extra_gpu_tenants` are other
    actors the driver adds beside learner rank 0 on its GPU (a distillation teacher: `placement.extra()`)."""

    def __init__(self, cfg: RunConfig, inputs: RunInputs, *, model: ModelConfig, model_path: str,
                 learner_cls: type | None = None, learner_kwargs: dict[str, Any] | None = None,
                 extra_gpu_tenants: int = 0):

        from rl.actors import RolloutGroup, init_ray, start_learner
        from rl.checkpoint import latest_checkpoint, load_state
        from rl.logs import setup_driver_logging
        from rl.placement import plan
        from rl.rollout import engine_kwargs
        from rl.run_lock import lock_run_dir
        from rl.tracking import MetricsLog, console
        from rl.weight_sync import make_weight_sync

        self.cfg, self.rewards, self.out = cfg, inputs.rewards, Path(cfg.output_dir)
        self._lock = lock_run_dir(self.out)  # held until `close` (or the process ends)
        logs = setup_driver_logging(self.out, cfg.verbose)  # engine / Ray / vLLM logs: output_dir/logs/
        dump_config(cfg, self.out / "config.yaml")
        self.console = console()
        self.tokenizer = load_tokenizer(cfg, model_path)
        self.tool_use = inputs.tool_use
        self.train_set, self.eval_sets = inputs.prompts or encode_run_prompts(cfg, self.tokenizer, inputs.rows,
                                                                              inputs.eval_rows, self.tool_use)
        self.budget = None
        if cfg.rollout.thinking_budget is not None:
            from rl.rollout.budget import thinking_budget_for

            self.budget = thinking_budget_for(self.tokenizer, cfg.rollout.thinking_budget, cfg.rollout.max_answer_tokens)
        self.max_completion_tokens = self.budget.max_completion_tokens if self.budget else cfg.rollout.max_new_tokens
        if self.tool_use:  # sampled tokens of all turns + the inserted tool turns
            self.max_completion_tokens = self.tool_use.max_completion_tokens(
                max(cfg.rollout.max_new_tokens, self.max_completion_tokens))

        self.resumed_from = latest_checkpoint(self.out, report=self.console.print)
        state = load_state(self.resumed_from) if self.resumed_from else {}
        self.start_step = state.get("step", 0)
        self.stream = PromptStream(len(inputs.rows), seed=cfg.trainer.seed, shuffle=cfg.data.shuffle)
        if state:
            self.stream.load_state_dict(state["data"])
        # a prefetched rollout has already taken its prompts and drawn its tokens: checkpoints until the step that
        # trains on it record the data cursor and the engines' sampler state from before it (`prefetch`)
        self.before_prefetch: dict | None = None
        self._last_saved: Path | None = self.resumed_from
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout")

        init_ray(cfg.ray_address, logs, verbose=cfg.verbose)
        self.weight_sync = make_weight_sync(cfg.rollout)
        cluster = cfg.cluster
        self.placement = plan(learners=cfg.trainer.learners, workers=cfg.rollout.workers,
                              tensor_parallel_size=cfg.rollout.tensor_parallel_size, placement=cluster.placement,
                              learner_resources=cluster.learner_resources, rollout_resources=cluster.rollout_resources,
                              engines_own_gpus=cfg.rollout.weight_sync == "nccl", extra_gpu_tenants=extra_gpu_tenants,
                              timeout_s=cluster.placement_timeout_s)
        self.learner = start_learner(model_path, model, cfg.trainer, cfg.algorithm, cfg.rollout.temperature,
                                     resume_from=str(self.resumed_from) if self.resumed_from else None,
                                     max_completion_tokens=self.max_completion_tokens, learners=cfg.trainer.learners,
                                     placement=self.placement, learner_cls=learner_cls, **(learner_kwargs or {}))
        # colocated on GPUs, vLLM engines free their memory while the learner trains (not while they prefetch)
        self.engines_sleep = (self.placement.engines_share_gpus and cfg.rollout.backend == "vllm"
                              and cfg.rollout.max_staleness == 0)
        longest = max(len(p) for p in self.train_set.ids + [q for s in self.eval_sets for q in s.ids])
        eval_tokens = (cfg.eval.max_new_tokens or 0) if cfg.eval else 0
        self.rollout = RolloutGroup(cfg.rollout.workers, cfg.rollout.backend, engine_kwargs(
            cfg.rollout, model_path=model_path, dtype=model.dtype, seed=cfg.trainer.seed,
            max_model_len=longest + max(self.max_completion_tokens, eval_tokens), **self.weight_sync.engine_kwargs,
            **({"enable_sleep_mode": True} if self.engines_sleep else {})),
            placement=self.placement, timeout_s=cfg.rollout.timeout_s, max_restarts=cfg.rollout.max_restarts,
            on_restart=lambda i: self.weight_sync.restore(i))
        self.weight_sync.connect(self.learner, self.rollout.workers)
        self._record_placement()
        if self.resumed_from:
            self.push_weights()
            # the engines draw on from where the checkpointed run's were (`rl.rollout.sampler_state`)
            if "sampler" in state and not self.rollout.set_sampler_states(state["sampler"]):
                self.console.print("note: the checkpoint's rollout sampler state does not fit these rollout "
                                   "workers (another number of workers, tensor-parallel ranks or GPUs): engines "
                                   "without one start new sampling streams, so the run goes on as another draw")
        self.log = MetricsLog(self.out, cfg.tensorboard, resume_step=self.start_step)

    # ---- the loop ------------------------------------------------------------------------------------------

    def run(self, step_fn: Callable[[int], dict], *, title: str, describe: Callable[[dict], str],
            line: Callable[[dict], str]) -> list[dict]:
        """Steps `start_step + 1 .. trainer.max_steps` of `step_fn(step) -> metrics record`, with held-out
        evaluation before the first step (of a fresh run), every `eval.every` steps and after the last,
        checkpoints every `trainer.save_every` steps and at the end, the progress bar (`describe(record)`) and
        one console line per step (`line(record)`). Returns every step's record (a resumed run's earlier ones
        included).

        SIGTERM / SIGINT let the current step finish, save a checkpoint and end the run (exit 128 + the signal's
        number; a second signal ends it at once). `trainer.max_nonfinite_steps` optimizer steps skipped in a row
        for a non-finite loss or gradient end it with a message (exit 1): the last checkpoint holds the last
        finite weights."""
        from rewards import RewardError
        from rl.actors import ActorFailure
        from rl.tracking import progress_bar

        cfg, out = self.cfg, self.console
        stop = _StopRequest()
        if self.resumed_from:
            out.print(f"resuming from {self.resumed_from} (step {self.start_step})")
        elif cfg.eval:
            try:
                self.log.log({"step": 0, **self.evaluate()})
            except (ActorFailure, RewardError) as e:
                self._failed(0, e)
            out.print(f"step 0: held-out accuracy {self.log.records[-1]['eval_accuracy']:.3f}")
        last = cfg.trainer.max_steps
        with progress_bar(out) as progress, stop:
            task = progress.add_task(title, total=last, completed=self.start_step)
            for step in range(self.start_step + 1, last + 1):
                try:  # a lost actor or a failed grader in the step, its evaluation or its checkpoint: one line
                    record = step_fn(step)
                    if cfg.eval and (step == last or (cfg.eval.every and step % cfg.eval.every == 0)):
                        record.update(self.evaluate())
                    alert = self._entropy_alert(record)
                    self.log.log(record)
                    if step % cfg.trainer.save_every == 0 or step == last or stop.signal is not None:
                        self.save(step)
                except (ActorFailure, RewardError) as e:
                    self._failed(step, e)
                progress.update(task, advance=1, description=describe(record))
                out.print(line(record))
                if alert:
                    out.print(alert)
                if stop.signal is not None:
                    self._end(f"stopped by {stop.signal.name} after step {step}; checkpoint saved, re-run the same "
                              "command to resume", code=128 + stop.signal.value)
                if (unscored := record.get("reward/unscored_frac") or 0.0) > cfg.trainer.max_unscored_frac:
                    self._end(f"error: {unscored:.0%} of step {step}'s completions could not be scored (over "
                              f"trainer.max_unscored_frac={cfg.trainer.max_unscored_frac:g}): see the "
                              "reward/<label>/errors metrics and the warnings above; fix the grader, then resume.",
                              code=1)
                if record.get("nonfinite_streak", 0) >= cfg.trainer.max_nonfinite_steps:
                    self._end(f"error: {record['nonfinite_streak']} optimizer steps in a row had a non-finite loss or "
                              "gradient and were skipped (trainer.max_nonfinite_steps); the weights were not "
                              "changed by them. Lower trainer.lr or check the rewards, then resume.", code=1)
        self.log.close()
        return self.log.records

    def _entropy_alert(self, record: dict) -> str | None:
        """Flag (`alert/entropy_collapse` = 1, and a console line the first time) a step whose entropy fell below
        `ENTROPY_COLLAPSE` × the run's first logged entropy: a policy that stopped exploring (too high a learning
        rate, a reward that is being hacked) — the Qwen3 report wants entropy level or rising."""
        entropy = record.get("entropy")
        first = next((r["entropy"] for r in self.log.records if r.get("entropy") is not None), entropy)
        if entropy is None or first is None or not entropy < ENTROPY_COLLAPSE * first:
            return None
        said = any(r.get("alert/entropy_collapse") for r in self.log.records)  # a resumed run's included
        record["alert/entropy_collapse"] = 1.0
        if said:
            return None
        return (f"ALERT step {record['step']}: entropy collapsed to {entropy:.4f} nats/token (from {first:.3f}): the "
                "policy stopped exploring; lower trainer.lr, or see algorithm.entropy")

    def _failed(self, step: int, error: Exception) -> None:
        """End the run on an actor it cannot do without, or a reward that failed, at `step`: one line, no traceback."""
        where = f"the last checkpoint is {self._last_saved}" if self._last_saved else "no checkpoint yet"
        self._end(f"error: step {step}: {error}; {where}: re-run the same command to resume", code=1)

    def _end(self, message: str, *, code: int) -> None:
        """End the run now: metrics closed, actors gone, the run directory released; `message` to stderr."""
        import sys

        self.log.close()
        self.close()
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(code)

    def _record_placement(self) -> None:
        """`output_dir/placement.json`: the Ray node (id and address) each learner rank and rollout worker runs on."""
        import json

        import ray

        from rl.placement import node_of

        address = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        where = {"learners": [node_of(a) for a in self.learner.actors],
                 "rollout_workers": [node_of(w) for w in self.rollout.workers]}
        self.where = where
        (self.out / "placement.json").write_text(json.dumps(
            {role: [{"node_id": n, "address": address.get(n)} for n in nodes] for role, nodes in where.items()},
            indent=1))

    def close(self) -> None:
        import ray

        from rl.logs import close_driver_logging
        from rl.run_lock import release

        ray.shutdown()  # first: a prefetching thread blocked on a worker then returns at once
        self._prefetcher.shutdown(wait=True, cancel_futures=True)
        if self.tool_use:
            self.tool_use.close()
        release(self._lock)
        close_driver_logging()

    # ---- what a step does with the pieces ---------------------------------------------------------------------

    def sample(self, prompt_ids: list[list[int]], spec: Any, rows: list[dict] | None = None) -> list:
        """`spec.n` completions per prompt, flattened; through the thinking budget when one is configured; with
        tools, multi-turn trajectories (`rows`: the prompts' data rows, which an environment's `reset` reads)."""
        generate = self.rollout.generate
        if self.budget is not None:
            from rl.rollout.budget import generate_with_budget

            def generate(prompts: list[list[int]], spec: Any) -> list:
                return generate_with_budget(self.rollout, prompts, spec, self.budget)
        if self.tool_use is None:
            groups = generate(prompt_ids, spec)
        else:
            groups = self.tool_use.sample(generate, prompt_ids, spec, rows, self._render_with_observation)
        return [c for group in groups for c in group]

    def _render_with_observation(self, row: dict, observation: str) -> list[int]:
        """Token ids of `row`'s prompt with an environment's observation appended to its last user message."""
        from rl.data import with_observation

        row = {**row, "prompt": with_observation(row["prompt"], observation)}
        return encode_prompts([row], self.tokenizer, self.cfg.data, seed=self.cfg.trainer.seed, source="reset()",
                              tools=self.tool_use.schemas).ids[0]

    def score(self, prompts: PromptSet, rows_idx: list[int], completions: list, step: int) -> Any:
        """The rewards of completion k of row `rows_idx[k]` of `prompts` (`rewards.Scores`)."""
        from rl.rollout.multiturn import reward_inputs

        trajectories = reward_inputs(completions) if self.tool_use else {}
        return self.rewards.score_rows([prompts.rows[i] for i in rows_idx], [c.token_ids for c in completions],
                                       self.tokenizer, rendered_prompts=[prompts.texts[i] for i in rows_idx],
                                       step=step, max_completion_tokens=self.max_completion_tokens, **trajectories)

    def push_weights(self) -> None:
        """The learner's weights into every engine; an engine found dead, or not done within `rollout.timeout_s`
        (hung), is replaced (with the current weights, `rollout.max_restarts`) and the push repeated."""
        import ray

        timeout = self.cfg.rollout.timeout_s
        try:
            self.weight_sync.push(timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            alive = [w.__ray_ready__.remote() for w in self.rollout.workers]
            for i, ref in enumerate(alive):
                try:
                    ray.get(ref, timeout=min(timeout, 60))
                except ray.exceptions.RayActorError:
                    self.rollout.restart(i, "died")
                except ray.exceptions.GetTimeoutError:
                    self.rollout.restart(i, f"did not load the new weights within rollout.timeout_s={timeout:g} s")
            self.weight_sync.push(timeout)

    @contextlib.contextmanager
    def learner_turn(self) -> Iterator[None]:
        """The block where the learner trains: engines colocated on its GPUs sleep through it (`engines_sleep`)
        and are awake again, with their old weights, before the weight sync."""
        if not self.engines_sleep:
            yield
            return
        self.rollout.sleep()
        try:
            yield
        finally:
            self.rollout.wake_up()

    def prefetch(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` (the next step's rollout) in the background; checkpoints written before the step that
        consumes it record the data cursor and the sampler state from before it (`resume_state`); the step that
        consumes it sets `before_prefetch` back to None. A resume samples that rollout again, with the same prompts
        and draws but the checkpoint's weights (the prefetch had the step's before)."""
        self.before_prefetch = self.resume_state()
        return self._prefetcher.submit(fn, *args)

    def resume_state(self) -> dict[str, Any]:
        """What a checkpoint records beside the learner's state for the run to go on exactly: the data cursor and
        every rollout engine's sampler state."""
        return {"data": self.stream.state_dict(), "sampler": self.rollout.sampler_states()}

    def evaluate(self) -> dict[str, float]:
        """Greedy completion of the held-out prompts, every set in one generate call; accuracy = mean of the first
        reward (0/1 rewards → accuracy): `eval_accuracy/<name>` per named set, `eval_accuracy` the first set's;
        with tools also `eval_tools/call_rate` etc. (`tool_metrics`)."""
        from rl.rollout import SamplingSpec
        from rl.rollout.multiturn import tool_metrics

        cfg = self.cfg
        spec = SamplingSpec(n=1, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, temperature=0.0)
        completions = self.sample([q for s in self.eval_sets for q in s.ids], spec,
                                  [row for s in self.eval_sets for row in s.rows])
        record: dict[str, float] = {}
        for eval_set, spec_set in zip(self.eval_sets, cfg.eval.sets(cfg.data.system_prompt)):
            done, completions = completions[: len(eval_set.ids)], completions[len(eval_set.ids):]
            scores = self.score(eval_set, list(range(len(done))), done, step=-1)
            metrics = {"eval_accuracy": scores.metrics[f"reward/{self.rewards.primary}/mean"],
                       "eval_response_len_mean": sum(len(c.token_ids) for c in done) / len(done)}
            if self.tool_use:
                metrics.update({f"eval_{k}": v for k, v in tool_metrics(done).items()})
            for key, value in metrics.items():
                record.setdefault(key, value)
                if spec_set.name:
                    record[f"{key}/{spec_set.name}"] = value
        return record

    def save(self, step: int) -> None:
        """A checkpoint of the learner (HF model directory + training state), the data cursor and the engines'
        sampler state (`resume_state`, from before a prefetched rollout)."""
        from rl.checkpoint import save_checkpoint

        self._last_saved = save_checkpoint(self.out, step, lambda d: self.learner.call("save", d),
                                           self.before_prefetch or self.resume_state(),
                                           keep_last=self.cfg.trainer.keep_last)
