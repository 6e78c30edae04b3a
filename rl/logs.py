"""Where a run's output goes. The console is the user's: stdout has the progress bar, one line per step and the
final summary; stderr has the warnings and errors that need the user (a restarted worker, a reward that failed to
grade, the error that ended the run). Everything else (vLLM's, Ray's, transformers' and torch's logs, from the
driver and from every actor) goes to `output_dir/logs/`:

- `driver.log`: the driver's Python logging at INFO and above (our warnings included) and Python warnings;
- `<actor>.log` (`learner_0.log`, `rollout_worker_0.log`, `teacher.log`): the actor process's stdout and stderr,
  at the file-descriptor level, so vLLM's logger, tqdm bars and C++ warnings are all there; a restarted worker
  appends to its predecessor's file after a header line.

With `verbose: true` the same logs are also printed to the console (actors' through Ray, prefixed with the actor's
name and pid, as Ray does by default).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

LOG_DIR_ENV = "RL_RUN_LOG_DIR"
"""The run's `output_dir/logs` in every actor's environment (`rl.actors.init_ray`); unset, actors keep Ray's
default output handling."""
ECHO_ENV = "RL_RUN_LOG_ECHO"
"""`1`: actors also write their output to their original stdout / stderr, which Ray forwards to the console."""
OWN_PACKAGES = ("rl", "rewards", "verifiers", "distill", "__main__")
"""Loggers whose warnings are for the user (console); other libraries' warnings go to `driver.log` only."""


def log_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "logs"


def setup_driver_logging(output_dir: str | Path, verbose: bool = False) -> Path:
    """Route the driver's logging: everything at INFO and above to `output_dir/logs/driver.log`; to the console
    (stderr) our own packages' warnings, anyone's errors, and with `verbose` everything. Returns the log directory,
    which the actors write to (`rl.actors.init_ray`)."""
    directory = log_dir(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    close_driver_logging()  # a second run in this process
    to_file = logging.FileHandler(directory / "driver.log")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = _StderrHandler()
    to_console.setFormatter(_ConsoleFormatter())
    if not verbose:
        to_console.addFilter(_for_the_user)
    root = logging.getLogger()
    for handler in (to_file, to_console):
        handler._rl_run = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # torch / transformers deprecation warnings: to the log, not the console
    _propagate_library_loggers()
    return directory


def close_driver_logging() -> None:
    """Detach the handlers `setup_driver_logging` added (the run is over; the process may start another)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_rl_run", False)]:
        root.removeHandler(handler)
        handler.close()
    logging.captureWarnings(False)


def _for_the_user(record: logging.LogRecord) -> bool:
    """The console filter without `verbose`: our packages' warnings, and anyone's errors."""
    if record.levelno >= logging.ERROR:
        return True
    own = record.name.split(".")[0] in OWN_PACKAGES
    return own and record.levelno >= logging.WARNING


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time: the progress bar swaps it for a proxy that prints above the
    bar, and a handler holding the original stream would tear the bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def _propagate_library_loggers() -> None:
    """vLLM, Ray and transformers each install a handler of their own that prints to the console; send their
    records through the root logger's handlers (above) instead."""
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM configures its logger when imported, later
    for name in ("vllm", "ray"):
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True
    if "transformers" in sys.modules or _importable("transformers"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def capture_output(name: str) -> Path | None:
    """In an actor's process: its stdout and stderr (file descriptors 1 and 2: Python's prints and logging, vLLM's
    logger, tqdm bars, C++ warnings) into `<run>/logs/<name>.log`, appended after a header line; also to the
    original streams when the run is verbose (`ECHO_ENV`). A no-op outside a run (`LOG_DIR_ENV` unset)."""
    directory = os.environ.get(LOG_DIR_ENV)
    if not directory:
        return None
    path = Path(directory) / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(log, f"==== {name} (pid {os.getpid()}) started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    echo = os.environ.get(ECHO_ENV) == "1"
    for fd in (1, 2):
        if echo:
            _tee(fd, log)
        else:
            os.dup2(log, fd)
    return path


def _tee(fd: int, log: int) -> None:
    """Make `fd` a pipe whose bytes a thread copies to `log` and to what `fd` was before."""
    original = os.dup(fd)
    read, write = os.pipe()
    os.dup2(write, fd)
    os.close(write)

    def pump() -> None:
        while chunk := os.read(read, 1 << 16):
            os.write(log, chunk)
            os.write(original, chunk)

    threading.Thread(target=pump, name=f"tee-fd{fd}", daemon=True).start()
