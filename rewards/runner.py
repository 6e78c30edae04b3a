"""Running the configured rewards on a batch: all rewards at once, the weighted sum, per-reward metrics.

Rewards are called as TRL calls them, by keyword: `fn(prompts=..., completions=..., **columns)`, where the
columns also carry TRL's `log_metric(name, value)` (averaged into `reward/<label>/<name>`) and a
`trainer_state` with `global_step`. Every reward of a step runs concurrently: `async def` rewards (and callables
returning awaitables, such as the judge) on one event loop, plain functions each in a thread of their own (the
judge, the reward-model actor and the verifiers' worker pools release the GIL while they wait). The step reward
of sample i is Σ_k w_k r_k(i) over the rewards k that returned a number for it; a reward returning `None` (it
does not apply to the sample) is left out, and a sample no reward applies to gets 0. A sample that some reward
failed to grade (`Failed`, or an error under `on_error: skip`) is *unscored*: its total is None, never 0, and
the drivers leave it out of group statistics and reward means (`reward/unscored_frac` counts them).

A reward that raises (or returns something outside the contract) is re-run one sample at a time to find the
samples that fail: with `on_error: raise` (default) the run stops with a `RewardError` naming the reward, the
first failing sample's index and the start of its prompt; with `on_error: skip` those samples become `None`
and are counted in `reward/<label>/errors`. `Failed` values returned by a reward are always counted, never
raised: they are the grader's own infrastructure outcomes (timeouts, HTTP errors), reported, not fatal.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from rewards.base import RewardSpec
from rewards.contract import Failed, RewardError, RewardFn, validated
from rewards.text import prompt_text

log = logging.getLogger("rewards")


@dataclass
class Scores:
    """One batch scored: per completion k, `totals[k]` = Σ w_i r_i(k) over the rewards that gave a value (None when
    a reward failed to grade it);
    `values[label][k]` = that reward's own value (None: not applicable, or not graded); `metrics` as logged;
    `texts` the decoded completions when scored from token ids (`score_rows`)."""

    totals: list[float | None]
    metrics: dict[str, float]
    values: dict[str, list[float | None]]
    texts: list[str] | None = None


class WeightedRewards:
    """The step reward: Σ_k w_k r_k over the rewards that returned a value for the sample."""

    def __init__(self, specs: list[RewardSpec]):
        labels = [s.label for s in specs]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"two rewards are labelled {label!r}: give one of them `label: <other name>` "
                                 "(labels name the metrics reward/<label>/...)")
        self.specs = specs
        self._pool = ThreadPoolExecutor(max_workers=max(len(specs), 1), thread_name_prefix="reward")

    @property
    def primary(self) -> str | None:
        """The first reward's label: held-out accuracy, pass@k and the data tools judge correctness by it."""
        return self.specs[0].label if self.specs else None

    def __call__(self, prompts: list, completions: list, columns: dict[str, Any]) -> tuple[list[float | None], dict]:
        """Returns (total reward per sample, None where unscored; metrics `reward/<label>/mean|none_rate|errors|
        time_s` and `reward/unscored_frac`).

        `columns` maps a name to one value per completion (a list) or to one value for all (e.g. `step`).
        """
        scores = self.score(prompts, completions, columns)
        return scores.totals, scores.metrics

    def score_rows(self, rows: list[dict], completion_ids: list[list[int]], tokenizer: Any, *,
                   rendered_prompts: list[str], step: int, max_completion_tokens: int,
                   completions: list | None = None, columns: dict[str, list] | None = None) -> Scores:
        """Score completion k (token ids, decoded here) of dataset row `rows[k]` as the contract says: prompts are
        the rows' `prompt`s, completions are TRL-shaped (a chat prompt gets a one-message assistant list, a string
        prompt a string; `completions` given: those, e.g. a tool-calling trajectory's messages), columns are every
        dataset column (None where a row lacks it) plus `completion_ids`, `step`, `rendered_prompt` (the prompt
        after the chat template), `max_completion_tokens` and the driver's `columns` (`tool_calls`, ...)."""
        texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        prompts = [r["prompt"] for r in rows]
        if completions is None:
            completions = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t
                           for p, t in zip(prompts, texts)]
        names = dict.fromkeys(k for r in rows for k in r if k != "prompt")
        row_columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in names}
        row_columns.update(completion_ids=completion_ids, step=step, rendered_prompt=rendered_prompts,
                           max_completion_tokens=max_completion_tokens, **(columns or {}))
        columns = row_columns
        return replace(self.score(prompts, completions, columns), texts=texts)

    def score(self, prompts: list, completions: list, columns: dict[str, Any]) -> Scores:
        """`__call__` with each reward's own values too."""
        results = _run(self._score_all(prompts, completions, columns))
        totals: list[float | None] = [0.0] * len(completions)
        metrics: dict[str, float] = {}
        values_by_label: dict[str, list[float | None]] = {}
        unscored: set[int] = set()
        for spec, (values, errors, seconds, logged, failed) in zip(self.specs, results):
            unscored.update(failed)
            present = [v for v in values if v is not None]
            for i, v in enumerate(values):
                if v is not None:
                    totals[i] += spec.weight * v
            values_by_label[spec.label] = values
            metrics[f"reward/{spec.label}/mean"] = sum(present) / len(present) if present else float("nan")
            metrics[f"reward/{spec.label}/none_rate"] = 1.0 - len(present) / max(len(values), 1)
            metrics[f"reward/{spec.label}/errors"] = float(errors)
            metrics[f"reward/{spec.label}/time_s"] = seconds
            metrics.update({f"reward/{spec.label}/{k}": sum(v) / len(v) for k, v in logged.items()})
        for i in unscored:
            totals[i] = None
        metrics["reward/unscored_frac"] = len(unscored) / max(len(completions), 1)
        return Scores(totals, metrics, values_by_label)

    async def _score_all(self, prompts: list, completions: list, columns: dict) -> list[tuple]:
        return await asyncio.gather(*(self._score_one(s, prompts, completions, columns) for s in self.specs))

    async def _score_one(self, spec: RewardSpec, prompts: list, completions: list, columns: dict) -> tuple:
        """(values with None where there is no reward, number of errors, seconds, metrics the reward logged, the
        indices of the samples it failed to grade)."""
        start = time.perf_counter()
        logged: dict[str, list[float]] = {}
        columns = {**_trl_extras(columns, logged), **columns}
        try:
            raw = await asyncio.wait_for(self._call(spec.func, prompts, completions, {**columns, **spec.kwargs}),
                                         spec.timeout_s)
            slots = validated(raw, len(completions), spec.label)
        except TimeoutError:
            slots = [Failed(f"no answer within timeout_s={spec.timeout_s:g} s")] * len(completions)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is isolated per sample below
            slots = await self._isolate(spec, prompts, completions, columns, exc)
        values, errors, reasons, failed = [], 0, [], []
        for i, v in enumerate(slots):
            if isinstance(v, Exception):
                if spec.on_error == "raise":
                    raise _error(spec, i, prompts[i], v) from v
                v = Failed(f"{type(v).__name__}: {v}")
            if isinstance(v, Failed):
                errors += 1
                reasons.append(v.reason)
                failed.append(i)
                v = None
            values.append(v)
        if errors:
            log.warning("reward %r: %d of %d samples not graded (first: %s)", spec.label, errors, len(slots), reasons[0])
        return values, errors, time.perf_counter() - start, logged, failed

    async def _call(self, func: RewardFn, prompts: list, completions: list, kwargs: dict) -> Any:
        kwargs = {"prompts": prompts, "completions": completions, **kwargs}  # by keyword, as TRL calls them
        if _is_async(func):
            out = func(**kwargs)
        else:
            out = await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(func, **kwargs))
        return await out if inspect.isawaitable(out) else out

    async def _isolate(self, spec: RewardSpec, prompts: list, completions: list, columns: dict,
                       batch_error: Exception) -> list:
        """Re-run the reward on each sample alone; returns per-sample values or exceptions."""
        n = len(completions)

        async def one(i: int) -> Any:
            cols = {k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()}
            try:
                out = await self._call(spec.func, [prompts[i]], [completions[i]], {**cols, **spec.kwargs})
                return validated(out, 1, spec.label)[0]
            except Exception as exc:  # noqa: BLE001 - reported by the caller with the sample index
                return exc

        if _is_async(spec.func):
            slots = list(await asyncio.gather(*(one(i) for i in range(n))))
        else:  # one at a time: with `raise`, stop at the first failing sample
            slots = []
            for i in range(n):
                slots.append(await one(i))
                if isinstance(slots[-1], Exception) and spec.on_error == "raise":
                    break
            slots += [None] * (n - len(slots))
        if not any(isinstance(s, Exception) for s in slots) and spec.on_error == "raise":
            raise RewardError(f"reward {spec.label!r} failed on the batch of {n} samples but on no single sample: "
                              f"{type(batch_error).__name__}: {batch_error}") from batch_error
        return slots


def _trl_extras(columns: dict, logged: dict[str, list[float]]) -> dict:
    """What TRL also passes reward functions: `log_metric(name, value)` (averaged into reward/<label>/<name>)
    and `trainer_state` (here only its `global_step`)."""
    extras: dict[str, Any] = {"log_metric": lambda name, value: logged.setdefault(name, []).append(float(value))}
    if "step" in columns:
        extras["trainer_state"] = SimpleNamespace(global_step=columns["step"])
    return extras


def _error(spec: RewardSpec, i: int, prompt: Any, exc: Exception) -> RewardError:
    start = " ".join(str(prompt_text(prompt)).split())[:80]
    return RewardError(f"reward {spec.label!r} failed on sample {i} (prompt: {start!r}): {type(exc).__name__}: {exc} "
                       "— fix the reward, or set `on_error: skip` on it to count such samples as errors and go on")


def _is_async(func: RewardFn) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # a callable object (the judge): look at its class's __call__
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also when the caller is inside an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def call_reward(func: RewardFn, prompts: list, completions: list, columns: dict[str, Any]) -> list[float | None]:
    """Call one reward under the contract (awaiting it if async) and check its output: values, or None where
    it returned None or `Failed`. Raises `RewardError` if it fails."""
    runner = WeightedRewards([RewardSpec(getattr(func, "__name__", type(func).__name__), func)])
    values, *_ = _run(runner._score_one(runner.specs[0], prompts, completions, columns))
    return values
