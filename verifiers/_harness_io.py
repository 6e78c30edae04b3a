"""Framing, the value codec and pipe plumbing, shared by the in-sandbox harness and the host.

Standalone (stdlib only): the host ships this file into the sandbox next to `_harness.py`.
Values cross process boundaries only as `encode`d JSON: plain types (None, bool, int, float, str, list) and
tagged tuple/dict/set/frozenset/bytes/complex; `decode` rebuilds exactly those, so no object with a custom
`__eq__` or `__hash__` can come back from candidate code.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys

FRAME_LIMIT = 1 << 30
MAX_DEPTH = 200


def pack_frame(obj) -> bytes:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return len(data).to_bytes(8, "big") + data


def unpack_frames(data: bytes) -> list:
    """All complete frames in `data` (a truncated last frame is dropped)."""
    frames, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 8], "big")
        if pos + 8 + size > len(data):
            break
        frames.append(json.loads(data[pos + 8 : pos + 8 + size].decode("utf-8", "surrogatepass")))
        pos += 8 + size
    return frames


def encode(x, depth: int = 0):
    """A Python value as JSON data: plain types only, tagged where JSON has no type of its own."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if x is None or type(x) in (bool, str):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int.__index__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, list):
        return [encode(v, depth + 1) for v in list.__iter__(x)]
    if isinstance(x, tuple):
        return {"tuple": [encode(v, depth + 1) for v in tuple.__iter__(x)]}
    if isinstance(x, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]}
    if isinstance(x, (set, frozenset)):
        tag = "set" if isinstance(x, set) else "frozenset"
        return {
            tag: [encode(v, depth + 1) for v in (set.__iter__(x) if tag == "set" else frozenset.__iter__(x))]
        }
    if isinstance(x, (bytes, bytearray)):
        return {"bytes": bytes(x).hex()}
    if isinstance(x, complex):
        return {"complex": [complex.__getattribute__(x, "real"), complex.__getattribute__(x, "imag")]}
    raise TypeError(f"cannot pass a value of type {type(x).__name__!r} between candidate and checker")


def decode(j, depth: int = 0):
    """Inverse of `encode`, accepting only the shapes `encode` produces."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if j is None or type(j) in (bool, int, float, str):
        return j
    if type(j) is list:
        return [decode(v, depth + 1) for v in j]
    if type(j) is dict and len(j) == 1:
        ((tag, body),) = j.items()
        if tag == "tuple" and type(body) is list:
            return tuple(decode(v, depth + 1) for v in body)
        if tag == "dict" and type(body) is list and all(type(p) is list and len(p) == 2 for p in body):
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
        if tag in ("set", "frozenset") and type(body) is list:
            items = [decode(v, depth + 1) for v in body]
            return set(items) if tag == "set" else frozenset(items)
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "complex" and type(body) is list and len(body) == 2:
            return complex(float(body[0]), float(body[1]))
    raise ValueError(f"malformed value {str(j)[:80]!r}")


def read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("control channel closed early")
        buf += chunk
    return bytes(buf)


def read_frame(fd: int):
    size = int.from_bytes(read_exact(fd, 8), "big")
    if size > FRAME_LIMIT:
        raise ValueError("frame too large")
    return json.loads(read_exact(fd, size).decode("utf-8", "surrogatepass"))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def close_fds_except(keep) -> None:
    keep = sorted(set(keep))
    low = 3
    for fd in keep:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


class Captured:
    """Drains a pipe into a capped buffer; `over` is set when the cap was exceeded."""

    def __init__(self, fd: int, cap: int, tail: bool = False) -> None:
        self.fd, self.cap, self.tail = fd, cap, tail
        self.buf = bytearray()
        self.over = False
        os.set_blocking(fd, False)

    def pump(self) -> bool:
        """Read what is there; False at end of file."""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.buf += chunk
            if len(self.buf) > self.cap:
                if self.tail:
                    del self.buf[: len(self.buf) - self.cap]
                else:
                    self.over = True
                    del self.buf[self.cap :]
                    return True

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


def reap(pid: int, kill: bool) -> int:
    if kill:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fresh_stdio() -> None:
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8", line_buffering=True
    )


def exit_status(exc: BaseException | None) -> int:
    """The exit status CPython would give: SystemExit semantics, 1 for an uncaught exception."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=sys.stderr)
        return 1
    import traceback  # only candidate processes that crash pay for this import

    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return 1


def run_module(source: str, name: str) -> BaseException | None:
    namespace = {"__name__": name, "__builtins__": builtins}
    try:
        exec(compile(source, "<solution>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - candidate code may raise anything; we report it
        return exc
    return None
