"""One run per `output_dir` at a time: an exclusive `flock` on `output_dir/.lock`, held while the run lives.

The kernel drops the lock when the process that holds it ends, however it ends (kill -9 included), so a killed run
never leaves a stale lock behind: re-running the same command resumes. The file records who holds it (pid, host,
start time) for the message the second run prints. `flock` is advisory and per machine: a second run on another
node that shares the directory over NFS may not see it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO

LOCK_FILE = ".lock"
_held: dict[Path, IO] = {}  # lock files this process holds, by resolved run directory


class RunDirInUse(ValueError):
    """Another live process holds the run directory."""


def lock_run_dir(output_dir: str | Path) -> IO:
    """Take `output_dir`'s lock (creating the directory), or raise RunDirInUse naming the run that holds it. A
    process that already holds it gets the same handle back; the lock lasts until `release` or the process ends."""
    root = Path(output_dir).expanduser().resolve()
    if root in _held:
        return _held[root]
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / LOCK_FILE).open("a+")
    except OSError as e:
        raise ValueError(f"output_dir {output_dir!r} cannot be used: {e.strerror or e}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        try:
            info = json.loads(holder)
            who = f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (ValueError, KeyError, TypeError):
            who = "another process"
        raise RunDirInUse(f"output_dir {output_dir!r} is in use by another run ({who}); wait for it to end or "
                          "choose another output_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.datetime.now().isoformat(timespec="seconds")}))
    handle.flush()
    _held[root] = handle
    return handle


def check_run_dir(output_dir: str | Path) -> None:
    """Pre-flight, creating nothing: `output_dir` (or the directory it would be made in) is writable, and no live
    run holds it. ValueError naming `output_dir` otherwise."""
    root = Path(output_dir).expanduser().resolve()
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if existing == root and not root.is_dir() else f"cannot be created in {existing}"
        raise ValueError(f"output_dir {str(output_dir)!r} {what} (not a writable directory)")
    if root in _held or not (root / LOCK_FILE).exists():
        return
    release(lock_run_dir(root))


def release(handle: IO) -> None:
    """Give the lock up (the run is over)."""
    for root, held in list(_held.items()):
        if held is handle:
            del _held[root]
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
