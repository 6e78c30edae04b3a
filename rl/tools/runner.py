"""Run a batch of tool calls concurrently, each under a time limit; whatever happens, every call gets a response.

Where each call runs:
- user functions (`rollout.tools` specs): in worker processes (`rl.tools.workers`), so a call past its time
  limit is killed (with any process it started) and its worker replaced;
- the built-in `python`: in verifiers' bubblewrap sandbox, whose wall-clock limit (the runner's, at most
  `PYTHON_LIMITS.wall_seconds`) kills the program's whole process tree;
- the built-in `calculator`: in the calling process (pure, size-capped, milliseconds);
- environment methods: in a thread of the calling process, since they act on that rollout's instance. A thread
  cannot be killed: a method past its limit is answered as timed out and left running, and its instance is
  marked broken: every later call on it answers an error at once (`is_broken` tells the rollout loop). The
  calls of one instance run one after another, in order (TRL runs them in a loop too); different instances
  and stand-alone calls run at the same time.

Responses follow TRL (trl/trainer/grpo_trainer.py, `_tool_call_loop`): a return value becomes `str(value)`;
a failure becomes `str({"error": message})`, i.e. `{'error': '...'}`. The messages say more than TRL's: an
exception is `ExceptionType: message` (TRL: `str(e)` alone), an unknown tool lists the available ones (TRL:
`Tool {name} not found.`).
"""

from __future__ import annotations

import inspect
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rl.tools.builtins import calculator, python, python_limits, run_python
from rl.tools.calls import ToolCall
from rl.tools.environment import environment_tools
from rl.tools.loading import spec_of
from rl.tools.workers import WorkerPool, call_function, stringify


@dataclass(frozen=True)
class ToolResult:
    """The response to one call: `content` goes into the `tool` message. `error`: the call failed (malformed,
    unknown tool, bad arguments, exception, timeout); `time_s`: wall time the runner spent on it."""

    content: str
    error: bool = False
    timed_out: bool = False
    time_s: float = 0.0


def error_response(message: str, *, timed_out: bool = False) -> ToolResult:
    """A failed call's response, in TRL's form."""
    return ToolResult(str({"error": message}), error=True, timed_out=timed_out)


class ToolRunner:
    """Runs `(ToolCall, environment instance or None)` jobs (see the module docstring).

    functions: the stand-alone tools (`load_tools`), callable by their `__name__`; an environment's methods are
    found on the job's instance and win over a stand-alone tool of the same name (as in TRL).
    timeout_s: time limit of each call. max_workers: calls running at once (threads), and at most as many
    worker processes for user functions (started on first use).
    """

    def __init__(self, functions: list[Callable], *, timeout_s: float = 30.0, max_workers: int = 8):
        if not timeout_s > 0 or max_workers < 1:
            raise ValueError(f"ToolRunner needs timeout_s > 0 and max_workers >= 1, got {timeout_s}, {max_workers}")
        self.functions = {f.__name__: f for f in functions}
        if len(self.functions) < len(functions):
            raise ValueError(f"two tools share a name: {[f.__name__ for f in functions]}")
        specs = {}
        for name, func in self.functions.items():
            if func in (calculator, python):
                continue
            spec = spec_of(func)
            if spec is None:
                raise ValueError(f"tool {name!r} cannot run in a worker process: load it with rl.tools.load_tools "
                                 "(`module:function` or `file.py:function`)")
            specs[name] = spec
        self.timeout_s = timeout_s
        self._pool = WorkerPool(specs, max_workers) if specs else None
        self._threads = ThreadPoolExecutor(max_workers, thread_name_prefix="rl-tool")
        self._broken: weakref.WeakSet[Any] = weakref.WeakSet()
        self._broken_ids: set[int] = set()  # instances that cannot be weakly referenced (rare: __slots__)

    def run(self, jobs: list[tuple[ToolCall, Any]]) -> list[ToolResult]:
        """One response per job, in order. Jobs on the same environment instance run in order, one at a time;
        the rest run concurrently."""
        lanes: dict[int, list[int]] = {}
        for i, (_, env) in enumerate(jobs):
            lanes.setdefault(id(env) if env is not None else -1 - i, []).append(i)
        results: list[ToolResult | None] = [None] * len(jobs)

        def run_lane(indices: list[int]) -> None:
            for i in indices:
                start = time.monotonic()
                result = self._run_one(*jobs[i])
                results[i] = ToolResult(result.content, result.error, result.timed_out, time.monotonic() - start)

        for future in [self._threads.submit(run_lane, lane) for lane in lanes.values()]:
            future.result()
        return results  # type: ignore[return-value]

    def is_broken(self, env: Any) -> bool:
        """True once a call on `env` overran its time limit (it may still be running)."""
        try:
            return env in self._broken
        except TypeError:
            return id(env) in self._broken_ids

    def close(self) -> None:
        """Stop the worker processes (idle ones now, busy ones when their call ends)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_one(self, call: ToolCall, env: Any) -> ToolResult:
        if call.error is not None or call.arguments is None:
            return error_response(f"invalid tool call: {call.error or 'no arguments'}")
        methods = {m.__name__: m for m in environment_tools(env)} if env is not None else {}
        func = methods.get(call.name) or self.functions.get(call.name)
        if func is None:
            available = ", ".join(sorted({*self.functions, *methods})) or "none"
            return error_response(f"unknown tool {call.name!r}; the available tools are: {available}")
        try:
            inspect.signature(func).bind(**call.arguments)
        except TypeError as e:
            return error_response(f"bad arguments for {call.name}: {e}")
        if call.name in methods:
            return self._in_thread(func, call.arguments, env)
        if func is python:
            return self._python(call.arguments["code"])
        if func is calculator:
            return self._call_here(func, call.arguments)
        status, detail = self._pool.call(call.name, call.arguments, self.timeout_s)
        if status == "ok":
            return ToolResult(detail)
        if status == "timeout":
            return error_response(f"{call.name} did not return within {self.timeout_s:g} s and was killed",
                                  timed_out=True)
        return error_response(detail)

    def _python(self, code: Any) -> ToolResult:
        if not isinstance(code, str):
            return error_response(f"bad arguments for python: code must be a string, got {type(code).__name__}")
        try:
            content, failed, timed_out = run_python(code, python_limits(self.timeout_s))
        except Exception as e:  # the sandbox itself failed (bubblewrap broke): the rollout goes on, the error shows
            return error_response(f"the sandbox failed: {type(e).__name__}: {e}")
        return ToolResult(content, error=failed, timed_out=timed_out)

    @staticmethod
    def _call_here(func: Callable, arguments: dict) -> ToolResult:
        try:
            return ToolResult(stringify(call_function(func, arguments)))
        except Exception as e:
            return error_response(f"{type(e).__name__}: {e}")

    def _in_thread(self, method: Callable, arguments: dict, env: Any) -> ToolResult:
        if self.is_broken(env):
            return error_response("this environment is unusable: an earlier tool call on it overran its time limit")
        box: list[ToolResult] = []

        def target() -> None:
            try:
                box.append(ToolResult(stringify(call_function(method, arguments))))
            except (Exception, SystemExit) as e:
                box.append(error_response(f"{type(e).__name__}: {e}"))

        thread = threading.Thread(target=target, name=f"rl-tool-{method.__name__}", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            self._mark_broken(env)
            return error_response(f"{method.__name__} did not return within {self.timeout_s:g} s (it may still be "
                                  "running; this environment answers errors from now on)", timed_out=True)
        return box[0]

    def _mark_broken(self, env: Any) -> None:
        try:
            self._broken.add(env)
        except TypeError:
            self._broken_ids.add(id(env))
