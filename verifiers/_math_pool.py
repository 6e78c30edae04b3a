"""A small persistent pool of killable worker processes for `verifiers.math`.

Each worker is a plain `python -m verifiers._math_worker` subprocess (not `multiprocessing`): nothing of the
caller's `__main__` is re-imported, it works from any thread, inside Ray actors and inside daemonic processes,
and a worker that runs past its timeout is simply SIGKILLed and replaced. A replacement is started at once, so
it imports sympy (about a second) while the other workers keep going.

A task borrows one idle worker for its whole round trip (one task per worker at a time). The clock of a task
starts when the worker is ready, so a worker's start-up never counts against a task's timeout.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from verifiers._math_worker import send

WORKER_MEMORY_BYTES = 4 << 30  # address-space limit per worker: a runaway bignum gets MemoryError, not swap
STARTUP_TIMEOUT_S = 120.0  # generous: a loaded 2-core machine can take a while to import sympy
_ROOT = str(Path(__file__).resolve().parent.parent)


class WorkerTimeout(Exception):
    """The task ran past its timeout; its worker was killed and replaced."""


class WorkerCrashed(Exception):
    """The worker died during the task (e.g. killed by the OS); it was replaced."""


class _Worker:
    def __init__(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "verifiers._math_worker", str(WORKER_MEMORY_BYTES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=_ROOT,  # `-m` puts the cwd first on sys.path: from inside verifiers/, math.py would be `math`
            start_new_session=True,  # Ctrl-C in the caller's terminal is the caller's business
        )
        self.ready = False

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # poll, not select: fds above 1024 are common inside Ray
        poller.register(fd, select.POLLIN)
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise WorkerTimeout
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise WorkerCrashed(f"worker exited with code {self.proc.poll()}")
            buf += chunk
        return bytes(buf)

    def receive(self, timeout: float):
        deadline = time.monotonic() + timeout
        size = int.from_bytes(self._read(4, deadline), "little")
        return pickle.loads(self._read(size, deadline))

    def wait_ready(self) -> None:
        if self.ready:
            return
        try:
            kind, message = self.receive(STARTUP_TIMEOUT_S)
        except WorkerTimeout:
            raise WorkerCrashed(f"worker did not start within {STARTUP_TIMEOUT_S:.0f} s") from None
        if kind == "import_error":
            raise ImportError(message)
        self.ready = True

    def call(self, task: tuple, timeout: float):
        self.wait_ready()
        try:
            send(self.proc.stdin, task)
        except (BrokenPipeError, OSError) as e:
            raise WorkerCrashed(f"worker pipe closed: {e}") from None
        return self.receive(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Pool:
    """`size` worker slots, started lazily; `run` is safe to call from many threads at once."""

    def __init__(self):
        self.pid = os.getpid()
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self.size = 0
        self.restarts = 0

    def grow(self, size: int) -> None:
        with self._lock:
            while self.size < size:
                self._idle.put(None)  # started by the first task that takes the slot
                self.size += 1

    def _start(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> _Worker:
        """Kill a worker and start its replacement now, so it warms up while others work."""
        worker.kill()
        with self._lock:
            self._workers.discard(worker)
            self.restarts += 1
        return self._start()

    def run(self, task: tuple, timeout: float):
        """The worker's reply to `task`; raises WorkerTimeout or WorkerCrashed (the worker is replaced)."""
        worker = self._idle.get()
        try:
            if worker is None or worker.proc.poll() is not None:
                worker = self._start() if worker is None else self._retire(worker)
            return worker.call(task, timeout)
        except (WorkerTimeout, WorkerCrashed):
            worker = self._retire(worker)
            raise
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.kill()


_pool: Pool | None = None
_pool_lock = threading.Lock()


def get_pool(size: int) -> Pool:
    """The process-wide pool, grown to at least `size` workers (a forked child gets its own pool)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = Pool()
        pool = _pool
    pool.grow(size)
    return pool


@atexit.register
def _shutdown() -> None:
    if _pool is not None and _pool.pid == os.getpid():
        _pool.close()
