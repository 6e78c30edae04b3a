"""Worker processes for user tool functions, so that a call past its time limit can be killed.

Each worker is a fresh interpreter running `serve(FD)`, started in a session of its own (its process group is killed
as a whole: children a tool started die with it) and talking over a socket pair (the tool's own stdout stays
free). It imports the tools itself from their specs (`rl.tools.loading.spec_of`), with the caller's `sys.path`,
then answers one call at a time: ("ok", str(value)) or ("error", "Type: message"). A worker that overruns, or
whose tool took the process down, is killed and replaced by a fresh one on the next call.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 120.0  # a worker imports the user's modules before its first call (torch, say)
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `rl/` and `rewards/`


class WorkerError(RuntimeError):
    """A worker could not start (its import of the tools failed or took too long)."""


def stringify(value: Any) -> str:
    """A tool's return value as the response text: `str(value)`, as TRL does (a dict becomes its Python repr)."""
    return value if isinstance(value, str) else str(value)


def call_function(func: Any, arguments: dict) -> Any:
    """Call a tool; an `async def` one runs to completion on an event loop of its own."""
    value = func(**arguments)
    return asyncio.run(value) if inspect.isawaitable(value) else value


class Worker:
    """One worker process (parent side)."""

    def __init__(self, specs: dict[str, str]):
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            code = f"from rl.tools.workers import serve; serve({theirs.fileno()})"
            self.proc = subprocess.Popen([sys.executable, "-c", code],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send((specs, list(sys.path)))
        if not self.conn.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise WorkerError(f"the tool worker did not start within {STARTUP_TIMEOUT_S:g} s")
        try:
            status, detail = self.conn.recv()
        except EOFError:
            status, detail = "failed", f"it exited with status {self.proc.wait()}"
        if status != "ready":
            self.kill()
            raise WorkerError(f"the tool worker could not load the tools: {detail}")

    def call(self, name: str, arguments: dict, timeout_s: float) -> tuple[str, str]:
        """("ok", content) / ("error", "Type: message") / ("timeout", "") / ("died", why). After "timeout" or
        "died" the worker is dead."""
        self.conn.send((name, arguments))
        if not self.conn.poll(timeout_s):
            self.kill()
            return "timeout", ""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.wait()
            self.kill()
            return "died", f"the tool's process exited (status {code}) during the call"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.conn.close()


class WorkerPool:
    """At most `size` workers, started when first needed; `call` blocks until one is free."""

    def __init__(self, specs: dict[str, str], size: int):
        self.specs = specs
        self._free: queue.LifoQueue[Worker | None] = queue.LifoQueue()  # a running worker is reused first
        for _ in range(size):
            self._free.put(None)  # a slot whose worker is not started (yet, or again)
        self._closed = False

    def call(self, name: str, arguments: dict, timeout_s: float) -> tuple[str, str]:
        worker = self._free.get()
        try:
            if worker is None:
                try:
                    worker = Worker(self.specs)
                except WorkerError as e:
                    return "died", str(e)
            status, detail = worker.call(name, arguments, timeout_s)
            if status in ("timeout", "died"):
                worker = None
            return status, detail
        finally:
            if self._closed and worker is not None:
                worker.kill()
                worker = None
            self._free.put(worker)

    def close(self) -> None:
        """Kill the idle workers now; busy ones are killed when their call returns."""
        self._closed = True
        for _ in range(self._free.qsize()):
            worker = self._free.get()
            if worker is not None:
                worker.kill()
            self._free.put(None)


def _exit_with_parent(parent: int) -> None:
    """A worker busy in a hung tool never reads the closed socket: it ends itself once its parent is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def serve(fd: int) -> None:
    """The worker's side: import the tools, then answer calls until the parent closes the socket."""
    conn = Connection(fd)
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    specs, path = conn.recv()
    sys.path[:] = path
    from rl.tools.loading import import_object

    try:
        functions = {name: import_object(spec, "tool") for name, spec in specs.items()}
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", ""))
    while True:
        try:
            name, arguments = conn.recv()
        except EOFError:
            return
        try:
            reply = ("ok", stringify(call_function(functions[name], arguments)))
        except (Exception, SystemExit) as e:
            reply = ("error", f"{type(e).__name__}: {e}")
        conn.send(reply)

