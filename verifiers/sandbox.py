"""Run an untrusted program under resource limits: `BubblewrapSandbox` (the real one) or `UnsafeLocalSandbox`.

What the bubblewrap sandbox protects against, and what it does not: verifiers/README.md, "## Code sandbox".

Besides stdin/stdout/stderr the program inherits two pipes, whose fd numbers are in its environment:
`SANDBOX_CONTROL_FD` (it reads the caller's `control` bytes, then EOF) and `SANDBOX_REPORT_FD` (what it writes
comes back as `RunResult.report`). A harness uses them to receive secrets only after it has started untrusted
code, and to report results on a channel that the untrusted code's stdout cannot reach.

Resource limits are set by `prlimit` (util-linux) inside the sandbox, right before the program starts: they are
per process and inherited by its children. The wall-clock limit kills the whole process tree from outside.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`; "
    "Arch: `pacman -S bubblewrap`), or set `sandbox: none` to run candidate code UNSANDBOXED on this machine"
)
WORKDIR = "/tmp"  # the sandbox's private tmpfs, also its working directory
SANDBOX_UID = 65534  # "nobody": the unprivileged uid programs run as


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run on this machine; the message says how to fix it."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run. Per-process limits apply to every process of the run.

    cpu_seconds: CPU time per process (RLIMIT_CPU).
    memory_bytes: address space per process (RLIMIT_AS).
    file_size_bytes: largest file a process may write (RLIMIT_FSIZE).
    nproc: processes and threads in the sandbox (RLIMIT_NPROC; the sandbox's own init counts as one).
    wall_seconds: wall-clock time for the whole run; then every process of the run is killed.
    output_bytes: cap on each of stdout and stderr; a program that writes more is killed.
    tmpfs_bytes: size of the writable tmpfs that is the program's working directory.
    """

    cpu_seconds: int = 30
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 16 << 20
    nproc: int = 8
    wall_seconds: float = 30.0
    output_bytes: int = 1 << 20
    tmpfs_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"Limits.{field.name} must be > 0, got {value!r}")


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


class Sandbox(ABC):
    """Runs argv with `python` (the interpreter programs should use) available inside."""

    python: str

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        limits: Limits,
        files: Mapping[str, bytes] | None = None,
        stdin: bytes = b"",
        control: bytes = b"",
        report_bytes: int = 1 << 20,
    ) -> RunResult:
        """Run argv in a fresh working directory holding `files` (name -> content, read-only)."""


def _prlimit_argv(limits: Limits) -> list[str]:
    prlimit = shutil.which("prlimit", path="/usr/bin:/bin")
    if prlimit is None:
        raise SandboxUnavailable("`prlimit` (util-linux) is missing; install util-linux")
    cpu = int(limits.cpu_seconds)
    return [
        prlimit,
        f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the soft limit, SIGKILL a second later
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_size_bytes}",
        f"--nproc={limits.nproc}",
        "--nofile=256",
        "--core=0",
        "--",
    ]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _interpreter_dirs(python: str) -> list[str]:
    """Directories an interpreter needs: its prefix, base prefix and the real location of the binary."""
    out = subprocess.run(
        [python, "-I", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    binary = os.path.abspath(python)
    return [out[0], out[1], os.path.dirname(binary), os.path.dirname(os.path.realpath(binary))]


def _outermost(paths: Sequence[str]) -> list[str]:
    """Absolute paths, without any that lies inside another of them."""
    real = sorted({os.path.abspath(p) for p in paths if p})
    keep: list[str] = []
    for path in real:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(path)
    return keep


class BubblewrapSandbox(Sandbox):
    """bubblewrap: new user/PID/network/IPC/UTS/mount namespaces, read-only system, private tmpfs as cwd.

    Run as root, bwrap would map the sandbox uid onto real root (kuid 0), which RLIMIT_NPROC ignores and which
    still owns host files; so a root caller runs an outer bwrap (only to lay out the read-only file tree, where
    the interpreter may live under /root), drops to uid 65534 with `setpriv`, and runs the real, unprivileged
    bwrap inside it.
    """

    def __init__(self, python: str | None = None, ro_paths: Sequence[str] = (), bwrap: str = "bwrap") -> None:
        found = shutil.which(bwrap)
        if found is None:
            raise SandboxUnavailable(f"bubblewrap (`{bwrap}`) was not found on PATH: {INSTALL_HINT}")
        self.bwrap = found
        self.python = python or sys.executable
        self.ro_paths = _outermost(["/usr", *_interpreter_dirs(self.python), *ro_paths])
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("setpriv", path="/usr/bin:/bin") is None:
            raise SandboxUnavailable("running as root needs `setpriv` (util-linux) to drop privileges")
        self._checked = False
        self._lock = threading.Lock()

    def _tree_args(self) -> list[str]:
        args: list[str] = []
        for path in self.ro_paths:
            args += ["--ro-bind", path, path]
        for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(link) and not any(link == p for p in self.ro_paths):
                args += ["--symlink", os.readlink(link), link]
        return args

    def _outer_args(self) -> list[str]:
        """Privileged bwrap that only builds a file tree the unprivileged one can traverse, then drops root."""
        args = [self.bwrap, "--die-with-parent"]
        parents = {os.path.dirname(p) for p in self.ro_paths}
        dirs = set()
        for parent in parents:
            while parent not in ("/", ""):
                dirs.add(parent)
                parent = os.path.dirname(parent)
        for d in sorted(dirs):
            args += ["--perms", "0755", "--dir", d]
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
        uid = str(SANDBOX_UID)
        args += self._tree_args() + ["--bind", "/proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        drop = [
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]
        return args + ["--", setpriv, *drop, "--"]

    def _command(self, argv, limits, file_fds, env, info_fd) -> list[str]:
        uid = str(SANDBOX_UID)
        args = [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
        args += ["--new-session", "--uid", uid, "--gid", uid, "--hostname", "sandbox", "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--info-fd", str(info_fd)] + self._tree_args()
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmpfs_bytes), "--tmpfs", WORKDIR]
        for name, fd in file_fds.items():
            args += ["--perms", "0444", "--ro-bind-data", str(fd), f"{WORKDIR}/{name}"]
        # The root tmpfs and /dev are owned by the sandbox uid and unbounded in size: make them read-only.
        args += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", WORKDIR, "--"]
        args += _prlimit_argv(limits) + list(argv)
        return (self._outer_args() if self.as_root else []) + args

    def _check(self) -> None:
        """One trial run per instance, so a broken setup says why instead of failing every verdict."""
        with self._lock:
            if self._checked:
                return
            result = self._launch(
                [self.python, "-S", "-c", "print('ok')"], Limits(wall_seconds=60), {}, b"", b"", 1024
            )
            if result.stdout.strip() != b"ok":
                err = result.stderr.decode(errors="replace").strip()
                raise SandboxUnavailable(
                    f"bubblewrap is installed but could not start a sandbox: {err or result}. Unprivileged user "
                    "namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu >= 23.10 "
                    f"also kernel.apparmor_restrict_unprivileged_userns=0). Otherwise: {INSTALL_HINT}"
                )
            self._checked = True

    def run(self, argv, *, limits, files=None, stdin=b"", control=b"", report_bytes=1 << 20) -> RunResult:
        self._check()
        return self._launch(argv, limits, files or {}, stdin, control, report_bytes)

    def _launch(self, argv, limits, files, stdin, control, report_bytes) -> RunResult:
        _check_names(files)
        file_fds: dict[str, int] = {}
        try:
            for name, data in files.items():
                file_fds[name] = _memfd(name, data)
            return _start(
                lambda env, info_fd: self._command(argv, limits, file_fds, env, info_fd),
                limits=limits,
                stdin=stdin,
                control=control,
                report_bytes=report_bytes,
                extra_fds=list(file_fds.values()),
                want_info=True,
            )
        finally:
            for fd in file_fds.values():
                os.close(fd)


class UnsafeLocalSandbox(Sandbox):
    """NOT a sandbox: runs the program as this user, with rlimits, in a temporary directory.

    Only for machines where bubblewrap cannot run, and only when the config asks for it (`sandbox: none`).
    Candidate code can read and write your files, use the network and leave processes behind.
    """

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        message = (
            "sandbox=none: candidate code runs UNSANDBOXED on this machine, as this user, with only rlimits. "
            "It can read and delete your files and reach the network. Use the bubblewrap sandbox for anything "
            "but trusted code."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)

    def run(self, argv, *, limits, files=None, stdin=b"", control=b"", report_bytes=1 << 20) -> RunResult:
        files = files or {}
        _check_names(files)
        with tempfile.TemporaryDirectory(prefix="unsafe-sandbox-") as workdir:
            for name, data in files.items():
                path = os.path.join(workdir, name)
                with open(path, "wb") as f:
                    f.write(data)
                os.chmod(path, 0o444)
            return _start(
                lambda env, _: _prlimit_argv(limits) + list(argv),
                limits=limits,
                stdin=stdin,
                control=control,
                report_bytes=report_bytes,
                cwd=workdir,
            )


def make_sandbox(kind: str | Sandbox = "bwrap", python: str | None = None) -> Sandbox:
    """`"bwrap"` (default), `"none"` (unsandboxed, loud warning), or a ready `Sandbox` instance."""
    if isinstance(kind, Sandbox):
        return kind
    if kind == "bwrap":
        return _cached_bwrap(python or sys.executable)
    if kind == "none":
        return UnsafeLocalSandbox(python)
    raise ValueError(
        f"sandbox={kind!r} is not known: use 'bwrap' (default) or 'none' (unsafe, explicit opt-in)"
    )


_BWRAP: dict[str, BubblewrapSandbox] = {}
_BWRAP_LOCK = threading.Lock()


def _cached_bwrap(python: str) -> BubblewrapSandbox:
    with _BWRAP_LOCK:
        if python not in _BWRAP:
            _BWRAP[python] = BubblewrapSandbox(python)
        return _BWRAP[python]


def _check_names(files: Mapping[str, bytes]) -> None:
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"sandbox file name {name!r} must be a plain file name")


def _program_env(control_fd: int, report_fd: int, home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "SANDBOX_CONTROL_FD": str(control_fd),
        "SANDBOX_REPORT_FD": str(report_fd),
    }


def _start(build_cmd, *, limits, stdin, control, report_bytes, extra_fds=(), want_info=False, cwd=None):
    """Create the pipes, start `build_cmd(program_env, info_fd)` in its own session, and supervise it.

    With `cwd` (unsandboxed) the program gets its environment directly; otherwise `build_cmd` passes it on.
    """
    parent_fds: list[int] = []
    child_fds: list[int] = []
    try:
        pipes = {}
        for name in ("stdin", "stdout", "stderr", "control", "report", "info")[: 6 if want_info else 5]:
            r, w = os.pipe()
            theirs, ours = (r, w) if name in ("stdin", "control") else (w, r)
            child_fds.append(theirs)
            parent_fds.append(ours)
            pipes[name] = (theirs, ours)
        env = _program_env(pipes["control"][0], pipes["report"][0], home=cwd or WORKDIR)
        info_fd = pipes["info"][0] if want_info else None
        proc = subprocess.Popen(
            build_cmd(env, info_fd),
            stdin=pipes["stdin"][0],
            stdout=pipes["stdout"][0],
            stderr=pipes["stderr"][0],
            pass_fds=[*child_fds[3:], *extra_fds],
            start_new_session=True,
            cwd=cwd,
            env=env if cwd is not None else {"PATH": "/usr/bin:/bin"},
        )
    except BaseException:
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    feeds = {pipes["stdin"][1]: stdin, pipes["control"][1]: control}
    outputs = {
        "stdout": (pipes["stdout"][1], limits.output_bytes),
        "stderr": (pipes["stderr"][1], limits.output_bytes),
        "report": (pipes["report"][1], report_bytes),
    }
    return _supervise(proc, limits, feeds, outputs, pipes["info"][1] if want_info else None)


def _supervise(
    proc, limits, feeds: dict[int, bytes], outputs: dict[str, tuple[int, int]], info_r
) -> RunResult:
    """Feed `feeds` (fd -> bytes), collect `outputs` (name -> (fd, cap)) until every pipe closes.

    At the deadline, or when an output exceeds its cap, kill every process of the run.
    """
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    sel = selectors.DefaultSelector()
    pending = {fd: memoryview(data) for fd, data in feeds.items()}
    for fd in pending:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE)
    caps = {fd: cap for fd, cap in outputs.values()}
    if info_r is not None:
        caps[info_r] = 4096
    chunks: dict[int, list[bytes]] = {fd: [] for fd in caps}
    sizes = dict.fromkeys(caps, 0)
    for fd in caps:
        sel.register(fd, selectors.EVENT_READ)
    timed_out = truncated = False
    killed_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if killed_at is None and now >= deadline:
                timed_out, killed_at = True, _kill(proc, chunks.get(info_r))
            if killed_at is not None and now > killed_at + 2.0:
                break  # a process that escaped the run (only possible unsandboxed) still holds a pipe
            wait = (deadline if killed_at is None else killed_at + 2.0) - now
            for key, _ in sel.select(timeout=max(0.0, wait)):
                if key.fd in pending:
                    _write_some(sel, pending, key.fd)
                    continue
                data = _read_some(key.fd)
                if data is None:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                room = caps[key.fd] - sizes[key.fd]
                sizes[key.fd] += len(data)
                chunks[key.fd].append(data[: max(0, room)])
                if sizes[key.fd] > caps[key.fd] and killed_at is None and key.fd != info_r:
                    truncated, killed_at = True, _kill(proc, chunks.get(info_r))
        if killed_at is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out, killed_at = True, _kill(proc, chunks.get(info_r))
    finally:
        sel.close()
        for fd in [*pending, *caps]:
            _close_quietly(fd)
        if killed_at is None and proc.poll() is None:
            killed_at = _kill(proc, chunks.get(info_r))
        proc.wait()
    return RunResult(
        returncode=None if killed_at is not None else proc.returncode,
        stdout=b"".join(chunks[outputs["stdout"][0]]),
        stderr=b"".join(chunks[outputs["stderr"][0]]),
        report=b"".join(chunks[outputs["report"][0]]),
        timed_out=timed_out,
        truncated=truncated,
        wall_seconds=time.monotonic() - start,
    )


def _write_some(sel, pending: dict[int, memoryview], fd: int) -> None:
    view = pending[fd]
    try:
        view = view[os.write(fd, view[: 1 << 16]) :]
    except BlockingIOError:
        return
    except OSError:  # the program closed its end: it does not want the rest
        view = view[:0]
    pending[fd] = view
    if not view:
        sel.unregister(fd)
        del pending[fd]
        os.close(fd)


def _read_some(fd: int) -> bytes | None:
    """Up to 64 KiB; b"" at end of file; None if nothing was ready after all."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _child_pid(info_chunks) -> int | None:
    """The sandbox's init process (host pid), from bwrap's --info-fd JSON."""
    try:
        return int(json.loads(b"".join(info_chunks or []))["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _kill(proc: subprocess.Popen, info_chunks) -> float:
    """Kill the sandbox's init (the kernel then kills every process of its PID namespace), then bwrap itself."""
    pid = _child_pid(info_chunks)
    if pid is not None and proc.poll() is None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=2.0)  # bwrap exits once its init has been reaped, i.e. the namespace is empty
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return time.monotonic()


def _wait(proc: subprocess.Popen, killed_at) -> int | None:
    try:
        return proc.wait(timeout=None if killed_at is not None else 5.0)
    except subprocess.TimeoutExpired:
        _kill(proc, None)
        return proc.wait()


def _close_quietly(fd) -> None:
    if fd is None:
        return
    try:
        os.close(fd)
    except OSError:
        pass
