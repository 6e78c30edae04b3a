"""The trusted test runner that runs INSIDE the sandbox (stdlib only, plus `_harness_io` shipped next to it).

Host -> harness, on SANDBOX_CONTROL_FD: two length-prefixed JSON frames. The first ("job": the candidate code
and the test inputs) is read at start; the second ("secret": the per-run nonce and, for assert tests, the test
code) is read only after every process that runs candidate code has been forked, so no candidate process ever
holds it in memory. Harness -> host, on SANDBOX_REPORT_FD: a "ready" frame at start, then one final frame with
the nonce and the per-test results. Candidate processes close both fds before running candidate code, and the
harness makes itself non-dumpable so they cannot reach its memory or fds through ptrace or /proc.

Candidate code never runs in this process. Modes:
- stdio: one fresh forked process per test, stdin from a memfd; the harness reports each test's captured
  stdout and exit status; the host compares it with the expected output (which never enters the sandbox).
- call: one forked process defines the code and answers calls; return values cross back as data
  (`encode`/`decode`: plain types only, so no object with a custom `__eq__` ever reaches a comparison); the host
  compares them with the expected values (which never enter the sandbox).
- assert: the test code runs here, in this process; `candidate` and the candidate's functions are proxies
  that call into the candidate process and get plain data back.
"""

from __future__ import annotations

import builtins
import json
import os
import select
import signal
import sys
import time

try:
    from verifiers import _harness_io as hio
except ImportError:  # in the sandbox, run as a script: the host ships _harness_io.py next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _harness_io as hio

    del sys.path[0]  # never import from the writable working directory again

STDERR_TAIL = 2000


def _make_nondumpable() -> None:
    """PR_SET_DUMPABLE=0: processes of the same uid can no longer ptrace us or open /proc/<pid>/{mem,fd,...}."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


OWN_PID_NAMESPACE = False  # set in main() only after checking that init is the sandbox's own bwrap


def _in_own_pid_namespace() -> bool:
    """True only inside a bubblewrap sandbox, where every process but init belongs to this run."""
    try:
        with open("/proc/1/comm") as f:
            return f.read().strip() == "bwrap" and os.getpid() < 100
    except OSError:
        return False


def _kill_strays() -> None:
    """Inside the sandbox only: kill every other process (same uid: allowed) except init and us.

    Unsandboxed, /proc lists the whole machine, so this must never run there: callers kill process groups.
    """
    if not OWN_PID_NAMESPACE:
        return
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, os.getpid()):
            try:
                os.kill(int(name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# ---------------------------------------------------------------- stdio mode: one fresh process per test
def run_stdio_test(code: str, stdin: str, timeout: float, output_bytes: int) -> dict:
    """Fork a process that runs `code` as __main__ with `stdin`; capture its stdout and exit status."""
    memfd = os.memfd_create("stdin")
    hio.write_all(memfd, stdin.encode("utf-8", "surrogatepass"))
    os.lseek(memfd, 0, os.SEEK_SET)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the candidate process
        try:
            os.dup2(memfd, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            hio.close_fds_except([])
            os.setpgid(0, 0)
            hio.fresh_stdio()
            status = hio.exit_status(hio.run_module(code, "__main__"))
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: BLE001 - e.g. a closed stdout; that is the program's failure
                status = status or 1
            os._exit(status)
        finally:
            os._exit(1)
    for fd in (memfd, out_w, err_w):
        os.close(fd)
    out, err = hio.Captured(out_r, output_bytes), hio.Captured(err_r, STDERR_TAIL, tail=True)
    status, result = _wait_child(pid, out, err, time.monotonic() + timeout)
    for fd in (out_r, err_r):
        os.close(fd)
    _kill_strays()
    return {"status": result, "exit": status, "stdout": out.text(), "stderr": err.text()}


def _wait_child(pid: int, out: hio.Captured, err: hio.Captured, deadline: float):
    """Pump the child's pipes until it exits, exceeds its output cap or passes the deadline."""
    pidfd = os.pidfd_open(pid)
    try:
        open_fds = {out.fd: out, err.fd: err}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return hio.reap(pid, kill=True), "timeout"
            ready, _, _ = select.select([pidfd, *open_fds], [], [], left)
            for fd in ready:
                if fd in open_fds and not open_fds[fd].pump():
                    del open_fds[fd]
            if out.over:
                return hio.reap(pid, kill=True), "output_limit"
            if pidfd in ready:
                for cap in open_fds.values():
                    cap.pump()  # what it wrote before exiting; its children may keep the pipes open
                return hio.reap(pid, kill=False), "done"
    finally:
        os.close(pidfd)


# ---------------------------------------------------------------- call / assert modes: a candidate process
class CandidateFailure(BaseException):
    """The candidate process timed out, died or sent garbage. BaseException: test code cannot swallow it."""


class Candidate:
    """A forked process that ran the candidate's code and answers `call` requests with encoded values."""

    def __init__(self, code: str, setup: str, fn_name: str | None, reply_bytes: int) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                _candidate_main(code, setup, fn_name, req_r, resp_w, err_w)
            finally:
                os._exit(1)
        for fd in (req_r, resp_w, err_w):
            os.close(fd)
        self.req_w, self.resp_r = req_w, resp_r
        os.set_blocking(req_w, False)
        self.err = hio.Captured(err_r, STDERR_TAIL, tail=True)
        self.reply_bytes = reply_bytes
        self.alive = True
        self.failed: str | None = None  # set on any CandidateFailure, even one the test code swallowed
        self.escaped: str | None = None  # a StopIteration from the candidate during the current test

    def request(self, message: dict, deadline: float) -> dict:
        if not self.alive:
            raise self._fail("the candidate process is gone")
        try:
            self._send(hio.pack_frame(message), deadline)
            size = int.from_bytes(self._recv(8, deadline), "big")
            if size > self.reply_bytes:
                raise self._fail(f"reply of {size} bytes is over the output limit")
            reply = json.loads(self._recv(size, deadline).decode("utf-8", "surrogatepass"))
        except CandidateFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any malformed reply is the candidate's failure
            raise self._fail(f"bad reply: {type(exc).__name__}") from None
        if type(reply) is not dict:
            raise self._fail("bad reply")
        return reply

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait_for(self.req_w, deadline, write=True)
            try:
                view = view[os.write(self.req_w, view[: 1 << 16]) :]
            except BlockingIOError:
                continue
            except OSError:
                raise self._fail("the candidate process closed its input") from None

    def _recv(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            self._wait_for(self.resp_r, deadline)
            chunk = os.read(self.resp_r, min(n - len(buf), 1 << 20))
            if not chunk:
                raise self._fail("the candidate process exited" + self._why())
            buf += chunk
        return bytes(buf)

    def _wait_for(self, fd: int, deadline: float, write: bool = False) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail("timeout")
            r, w, _ = select.select(
                [fd, self.err.fd] if not write else [self.err.fd], [fd] if write else [], [], left
            )
            if self.err.fd in r:
                self.err.pump()
            if fd in r or fd in w:
                return

    def _why(self) -> str:
        self.err.pump()
        tail = self.err.text().strip().splitlines()
        return f" ({tail[-1][:200]})" if tail else ""

    def _fail(self, reason: str) -> CandidateFailure:
        self.kill()
        self.failed = self.failed or reason
        return CandidateFailure(reason)

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            hio.reap(self.pid, kill=True)
            for fd in (self.req_w, self.resp_r, self.err.fd):
                os.close(fd)
            _kill_strays()


def _candidate_main(code, setup, fn_name, req_r, resp_w, err_w) -> None:
    """In the forked child: define the code, then serve calls. Never returns."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(err_w, 2)
    hio.close_fds_except([req_r, resp_w])
    os.setpgid(0, 0)
    hio.fresh_stdio()
    namespace = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(setup + "\n" + code, "<solution>", "exec"), namespace)
        names = [k for k, v in namespace.items() if callable(v) and not k.startswith("__")]
        reply = {"ready": [n for n in names if type(n) is str]}
    except BaseException as exc:  # noqa: BLE001 - a crash while defining is the candidate's failure
        import traceback  # only candidate processes that crash pay for this import

        traceback.print_exception(type(exc), exc, exc.__traceback__)
        reply = {"dead": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stderr.flush()
    hio.write_all(resp_w, hio.pack_frame(reply))
    if "dead" in reply:
        os._exit(1)
    while True:
        request = hio.read_frame(req_r)
        hio.write_all(resp_w, hio.pack_frame(_answer(namespace, fn_name, request)))


def _answer(namespace: dict, fn_name: str | None, request: dict) -> dict:
    name = request["name"]
    fn = namespace.get(name)
    if fn is None and name == fn_name and isinstance(namespace.get("Solution"), type):
        fn = getattr(namespace["Solution"](), name, None)  # LeetCode style: a method of class Solution
    if fn is None:
        return {"raise": "NameError", "message": f"name {name!r} is not defined"}
    try:
        args = hio.decode(request["args"])
        value = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the checker as the candidate's exception
        base = next(c for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c)
        return {"raise": base.__name__, "message": str(exc)[:300]}
    try:
        return {"value": hio.encode(value)}
    except (TypeError, ValueError, RecursionError) as exc:
        return {"bad": str(exc)[:300]}


def _start_candidate(job: dict, deadline: float) -> tuple[Candidate, list[str] | str]:
    """Fork and wait until the code is defined: (candidate, its function names) or (candidate, why it died)."""
    cand = Candidate(job["code"], job.get("setup", ""), job.get("fn_name"), job["output_bytes"])
    try:
        reply = _ready(cand, deadline)
    except CandidateFailure as exc:
        return cand, str(exc)
    if "dead" in reply:
        cand.kill()
        return cand, str(reply["dead"])
    names = reply.get("ready")
    if type(names) is not list:
        cand.kill()
        return cand, "bad ready message"
    return cand, [n for n in names if type(n) is str]


def _ready(cand: Candidate, deadline: float) -> dict:
    size = int.from_bytes(cand._recv(8, deadline), "big")
    if size > cand.reply_bytes:
        raise cand._fail("ready message too large")
    try:
        reply = json.loads(cand._recv(size, deadline))
    except ValueError:
        raise cand._fail("bad ready message") from None
    return reply if type(reply) is dict else {"dead": "bad ready message"}


class Proxy:
    """Stands for one of the candidate's functions in the checker: arguments go out and data comes back."""

    def __init__(self, cand_ref: list, name: str, deadline_ref: list) -> None:
        self._cand_ref, self._name, self._deadline_ref = cand_ref, name, deadline_ref

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError("keyword arguments are not supported by the candidate proxy")
        cand = self._cand_ref[0]
        reply = cand.request({"name": self._name, "args": hio.encode(list(args))}, self._deadline_ref[0])
        if "value" in reply:
            try:
                return hio.decode(reply["value"])
            except Exception:  # noqa: BLE001 - malformed data from the candidate
                raise cand._fail("malformed return value") from None
        if "raise" in reply:
            exc_type = getattr(builtins, str(reply["raise"]), None)
            if exc_type in (StopIteration, StopAsyncIteration):
                # Inside the test's map()/filter()/iter(f, sentinel) it would end the iteration early and
                # silently skip checks; a BaseException (and the mark `_guarded` reads) fails the test instead.
                cand.escaped = f"candidate raised {exc_type.__name__}"
                raise CandidateFailure(cand.escaped)
            if isinstance(exc_type, type) and issubclass(exc_type, Exception):
                raise exc_type(str(reply.get("message", "")))
            raise cand._fail(f"candidate raised {str(reply['raise'])[:60]}")
        raise cand._fail(str(reply.get("bad", "bad reply"))[:300])


def run_call_tests(job: dict, deadline: float) -> list[dict]:
    """Call fn_name on each input; report encoded return values. A dead candidate is restarted."""
    results, cand = [], None
    for args in job["inputs"]:
        test_deadline = min(deadline, time.monotonic() + job["timeout"])
        if time.monotonic() >= deadline:
            results.append({"error": "out of time"})
            continue
        if cand is None or not cand.alive:
            cand, names = _start_candidate(job, test_deadline)
            if type(names) is str:
                results.append({"error": names})
                continue
        try:
            reply = cand.request({"name": job["fn_name"], "args": args}, test_deadline)
        except CandidateFailure as exc:
            results.append({"error": str(exc)})
            continue
        if "value" in reply:
            results.append({"value": reply["value"]})
        elif "raise" in reply:
            results.append({"error": f"raised {str(reply['raise'])[:60]}: {str(reply.get('message'))[:200]}"})
        else:
            results.append({"error": str(reply.get("bad", "bad reply"))[:300]})
    if cand is not None:
        cand.kill()
    return results


class Secret:
    """The second control frame, read once and only when first needed (see the module docstring)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.value = fd, None

    def get(self) -> dict:
        if self.value is None:
            self.value = hio.read_frame(self.fd)
            os.close(self.fd)
        return self.value


def run_assert_tests(job: dict, secret_frame: Secret, deadline: float) -> list[dict]:
    """Fork the candidate FIRST, then read the secret test code, then run it here against proxies."""
    first_deadline = min(deadline, time.monotonic() + job["timeout"])
    cand, names = _start_candidate(job, first_deadline)
    secret = secret_frame.get()
    tests = secret["asserts"] if "asserts" in secret else ["check(candidate)"]
    try:
        defs = [compile(secret.get(k, ""), "<checker>", "exec") for k in ("setup", "prompt", "test")]
        compiled = [compile(t, f"<test {i}>", "exec") for i, t in enumerate(tests)]
    except (SyntaxError, ValueError) as exc:  # broken tests: not the candidate's fault
        cand.kill()
        raise CheckerError(f"{type(exc).__name__}: {exc}") from None
    if type(names) is str:
        cand.kill()
        return [{"passed": False, "reason": f"candidate failed to load: {names}"} for _ in tests]
    cand_ref, deadline_ref = [cand], [first_deadline]
    # Never let the candidate stand in for len/abs/... or a dunder inside the checker.
    hidden = set(dir(builtins))
    namespace = {
        n: Proxy(cand_ref, n, deadline_ref) for n in names if n not in hidden and not n.startswith("__")
    }
    namespace["__name__"] = "__checker__"
    entry = secret.get("entry_point")

    def define() -> None:
        exec(defs[0], namespace)  # setup
        exec(defs[1], namespace)  # prompt: the dataset's own helpers replace the candidate's
        if entry:
            namespace[entry] = namespace["candidate"] = Proxy(cand_ref, entry, deadline_ref)
        exec(defs[2], namespace)  # test: defines check(candidate)

    setup = _guarded(define, cand, first_deadline)  # proxies may run here: failures are the candidate's
    if not setup["passed"]:
        cand.kill()
        return [{"passed": False, "reason": f"tests could not be set up: {setup['reason']}"} for _ in tests]
    results = []
    for test in compiled:
        deadline_ref[0] = min(deadline, time.monotonic() + job["timeout"])
        results.append(_guarded(lambda t=test: exec(t, namespace), cand, deadline_ref[0]))
    cand.kill()
    return results


class CheckerError(Exception):
    """The test code could not even be defined."""


def _guarded(fn, cand: Candidate, deadline: float) -> dict:
    """Run checker code; any exception, or any candidate failure it swallowed, fails the test."""
    if not cand.alive:
        return {"passed": False, "reason": f"candidate process gone ({cand.failed})"}
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic() + 0.5))
    cand.escaped = None
    try:
        fn()
        passed, reason = True, ""
    except CandidateFailure as exc:
        passed, reason = False, str(exc)
    except AssertionError as exc:
        passed, reason = False, f"AssertionError {str(exc)[:200]}".strip()
    except BaseException as exc:  # noqa: BLE001 - anything the test raised is a failed test
        passed, reason = False, f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if cand.failed or cand.escaped:  # the test code may have swallowed the failure
        passed, reason = False, reason or cand.failed or cand.escaped
    return {"passed": passed, "reason": reason}


def _on_alarm(signum, frame):
    raise CandidateFailure("timeout (checker)")


# ---------------------------------------------------------------- main
def main() -> None:
    started = time.monotonic()
    control_fd = int(os.environ.pop("SANDBOX_CONTROL_FD"))
    report_fd = int(os.environ.pop("SANDBOX_REPORT_FD"))
    _make_nondumpable()
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big ints are fine here: CPU and output are limited anyway
    signal.signal(signal.SIGALRM, _on_alarm)
    hio.write_all(report_fd, hio.pack_frame({"ready": True}))
    job = hio.read_frame(control_fd)
    global OWN_PID_NAMESPACE
    OWN_PID_NAMESPACE = job.get("own_pid_namespace") is True and _in_own_pid_namespace()
    deadline = started + job["budget"]
    secret = Secret(control_fd)
    try:
        if job["mode"] == "stdio":
            results = []
            for stdin in job["inputs"]:
                if time.monotonic() >= deadline:
                    results.append({"status": "timeout", "exit": None, "stdout": "", "stderr": "out of time"})
                    continue
                left = min(job["timeout"], deadline - time.monotonic())
                results.append(run_stdio_test(job["code"], stdin, left, job["output_bytes"]))
        elif job["mode"] == "call":
            results = run_call_tests(job, deadline)
        else:
            results = run_assert_tests(job, secret, deadline)
        report = {"results": results}
    except CheckerError as exc:
        report = {"checker_error": str(exc)}
    nonce = secret.get()[
        "nonce"
    ]  # stdio/call modes read it only now: no candidate process is left to inherit it
    hio.write_all(report_fd, hio.pack_frame({"nonce": nonce, **report}))


if __name__ == "__main__":
    main()
