"""Process plumbing for `verifiers.sandbox`: start a command with its pipes, feed and drain them, enforce the
wall clock and output caps, and make sure that when a run returns, every process of it is gone."""

from __future__ import annotations

import json
import os
import secrets
import select
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RunResult:
    """What came out of one run. `returncode` is None when the run was killed (timeout or output cap)."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    report: bytes
    timed_out: bool
    truncated: bool
    wall_seconds: float


def start(
    build_cmd, *, limits, stdin, control, report_bytes, extra_fds=(), sandboxed=True, cwd=None
) -> RunResult:
    """Create the pipes, start `build_cmd(program_env, info_fd)` in a new session, and supervise it.

    The program's environment holds the fd numbers of the control and report pipes. Sandboxed, `build_cmd` hands
    it to bwrap (which starts from an empty environment) and gets bwrap's --info-fd; unsandboxed, it is the
    process's own environment.
    """
    names = ("stdin", "stdout", "stderr", "control", "report") + (("info",) if sandboxed else ())
    pipes: dict[str, tuple[int, int]] = {}  # name -> (child end, our end)
    try:
        for name in names:
            r, w = os.pipe()
            pipes[name] = (r, w) if name in ("stdin", "control") else (w, r)
        token = secrets.token_hex(8)
        env = program_env(pipes["control"][0], pipes["report"][0], home=cwd or "/tmp", token=token)
        proc = subprocess.Popen(
            build_cmd(env, pipes["info"][0] if sandboxed else None),
            stdin=pipes["stdin"][0],
            stdout=pipes["stdout"][0],
            stderr=pipes["stderr"][0],
            pass_fds=[pipes[n][0] for n in names[3:]] + list(extra_fds),
            start_new_session=True,
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin"} if sandboxed else env,
        )
    except BaseException:
        for _, ours in pipes.values():
            os.close(ours)
        raise
    finally:
        for theirs, _ in pipes.values():
            os.close(theirs)
    feeds = {pipes["stdin"][1]: stdin, pipes["control"][1]: control}
    caps = {
        "stdout": limits.output_bytes,
        "stderr": limits.output_bytes,
        "report": report_bytes,
        "info": 4096,
    }
    outputs = {name: (pipes[name][1], caps[name]) for name in names if name in caps}
    return Supervisor(proc, limits.wall_seconds, feeds, outputs, token).run()


def program_env(control_fd: int, report_fd: int, home: str, token: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "SANDBOX_CONTROL_FD": str(control_fd),
        "SANDBOX_REPORT_FD": str(report_fd),
        "SANDBOX_RUN_ID": token,  # also marks the sandbox's init on the host, see SandboxInit
    }


class SandboxInit:
    """The sandbox's init process, pinned by a pidfd so that a recycled pid is never signalled.

    bwrap exits as soon as the program does, while its init may still be tearing the PID namespace down; the
    kernel lets init finish only once every other process of the namespace is gone, so waiting for init
    means waiting for the whole run.
    """

    def __init__(self) -> None:
        self.pidfd: int | None = None

    def learn(self, info: bytes, token: str) -> None:
        try:
            pid = int(json.loads(info)["child-pid"])
            pidfd = os.pidfd_open(pid)
        except (ValueError, KeyError, TypeError, OSError):
            return
        try:  # the pidfd is pinned: if this pid still runs our command line, the pidfd is our init
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = token.encode() in f.read()
        except OSError:
            ours = False
        if ours:
            self.pidfd = pidfd
        else:
            os.close(pidfd)

    def kill(self) -> None:
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_gone(self, timeout: float) -> bool:
        return self.pidfd is None or bool(select.select([self.pidfd], [], [], timeout)[0])

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class Supervisor:
    """Feeds `feeds` (fd -> bytes) and drains `outputs` (name -> (fd, cap)) of one started process."""

    def __init__(self, proc: subprocess.Popen, wall_seconds: float, feeds, outputs, token: str) -> None:
        self.proc, self.token = proc, token
        self.start = time.monotonic()
        self.deadline = self.start + wall_seconds
        self.pending = {fd: memoryview(data) for fd, data in feeds.items()}
        self.outputs = outputs
        self.caps = {fd: cap for fd, cap in outputs.values()}
        self.chunks: dict[int, list[bytes]] = {fd: [] for fd in self.caps}
        self.sizes = dict.fromkeys(self.caps, 0)
        self.init = SandboxInit()
        self.timed_out = self.truncated = False
        self.killed_at: float | None = None

    def run(self) -> RunResult:
        sel = selectors.DefaultSelector()
        try:
            for fd in self.pending:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_WRITE)
            for fd in self.caps:
                sel.register(fd, selectors.EVENT_READ)
            self._pump(sel)
            if self.killed_at is None:
                try:
                    self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.timed_out = True
                    self._kill()
        finally:
            sel.close()
            for fd in [*self.pending, *self.caps]:
                _close_quietly(fd)
            if self.proc.poll() is None:
                self._kill()
            self.proc.wait()
            self._wait_for_init()
        return RunResult(
            returncode=None if self.killed_at is not None else self.proc.returncode,
            stdout=self._collected("stdout"),
            stderr=self._collected("stderr"),
            report=self._collected("report"),
            timed_out=self.timed_out,
            truncated=self.truncated,
            wall_seconds=time.monotonic() - self.start,
        )

    def _pump(self, sel: selectors.BaseSelector) -> None:
        """Until every pipe is closed; at the deadline or over a cap, kill, then allow 2 s to drain."""
        info_fd = self.outputs["info"][0] if "info" in self.outputs else None
        while sel.get_map():
            now = time.monotonic()
            if self.killed_at is None and now >= self.deadline:
                self.timed_out = True
                self._kill()
            if self.killed_at is not None and now > self.killed_at + 2.0:
                return  # a process that escaped the run (possible only unsandboxed) still holds a pipe
            until = self.deadline if self.killed_at is None else self.killed_at + 2.0
            for key, _ in sel.select(timeout=max(0.0, until - now)):
                if key.fd in self.pending:
                    self._write_some(sel, key.fd)
                    continue
                data = _read_some(key.fd)
                if data is None:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    if key.fd == info_fd:
                        self.init.learn(b"".join(self.chunks[info_fd]), self.token)
                    continue
                self._keep(key.fd, data, is_info=key.fd == info_fd)

    def _keep(self, fd: int, data: bytes, is_info: bool) -> None:
        room = self.caps[fd] - self.sizes[fd]
        self.sizes[fd] += len(data)
        self.chunks[fd].append(data[: max(0, room)])
        if is_info and self.init.pidfd is None:
            self.init.learn(b"".join(self.chunks[fd]), self.token)
        if self.sizes[fd] > self.caps[fd] and self.killed_at is None and not is_info:
            self.truncated = True
            self._kill()

    def _write_some(self, sel: selectors.BaseSelector, fd: int) -> None:
        view = self.pending[fd]
        try:
            view = view[os.write(fd, view[: 1 << 16]) :]
        except BlockingIOError:
            return
        except OSError:  # the program closed its end: it does not want the rest
            view = view[:0]
        self.pending[fd] = view
        if not view:
            sel.unregister(fd)
            del self.pending[fd]
            os.close(fd)

    def _kill(self) -> None:
        """Kill the sandbox's init (the kernel then kills its whole PID namespace) and our process group."""
        self.killed_at = time.monotonic()
        self.init.kill()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _wait_for_init(self) -> None:
        if not self.init.wait_gone(5.0):
            self.init.kill()
            self.init.wait_gone(5.0)
        self.init.close()

    def _collected(self, name: str) -> bytes:
        return b"".join(self.chunks[self.outputs[name][0]])


def _read_some(fd: int) -> bytes | None:
    """Up to 64 KiB; b"" at end of file; None if nothing was ready after all."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
