"""A local vLLM OpenAI-compatible server (for the judge), as a plain class and as a thin Ray actor.

`VLLMServer(model_path).start()` runs `python -m vllm.entrypoints.openai.api_server` in its own process group,
waits for `/health` and returns the base URL (`http://HOST:PORT/v1`); `stop()` ends the whole group. The
server dies with the process that started it (Linux parent-death signal), so a killed run or Ray actor leaves
no server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rewards.settings import JudgeServerSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop() and the process group still clean up


class VLLMServer:
    """One `vllm.entrypoints.openai.api_server` subprocess."""

    def __init__(self, model_path: str, served_name: str | None = None,
                 settings: JudgeServerSettings | None = None, port: int | None = None, host: str = "127.0.0.1"):
        self.model_path, self.served_name = model_path, served_name or model_path
        self.settings, self.host, self.port = settings or JudgeServerSettings(), host, port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait until it is healthy; returns the base URL. Raises RuntimeError with the
        end of the server's log if it exits or does not become healthy in time."""
        s = self.settings
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
               "--served-model-name", self.served_name, "--host", self.host, "--port", str(self.port),
               "--max-model-len", str(s.max_model_len), "--gpu-memory-utilization", str(s.gpu_memory_utilization),
               "--kv-cache-memory-bytes", str(int(s.kv_cache_gib * 2**30)),
               *(["--enforce-eager"] if s.enforce_eager else []), *s.extra_args]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + s.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server for {self.model_path} exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self.healthy():
                return self.base_url
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM server for {self.model_path} not healthy after {s.start_timeout_s:.0f}s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate the server's process group (kill it if it does not exit within 20 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()


def start_server_actor(model_path: str, served_name: str, settings: JudgeServerSettings):
    """Start a `VLLMServer` inside a Ray actor on this node (it listens on loopback); returns (actor, base URL)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, scheduling_strategy=here)(VLLMServer).remote(model_path, served_name, settings)
    return actor, ray.get(actor.start.remote())
