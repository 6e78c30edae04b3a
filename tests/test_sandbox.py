"""The sandbox on its own: isolation, limits, timeouts, output caps, the explicit unsafe mode."""

from __future__ import annotations

import secrets
import sys

import pytest
from host_probes import processes_with

from verifiers.sandbox import (
    BubblewrapSandbox,
    Limits,
    SandboxUnavailable,
    UnsafeLocalSandbox,
    make_sandbox,
)

FAST = Limits(wall_seconds=10)


@pytest.fixture(scope="module")
def sandbox() -> BubblewrapSandbox:
    return make_sandbox("bwrap")


def run_py(sandbox, code: str, limits: Limits = FAST, **kwargs):
    return sandbox.run([sandbox.python, "-S", "-I", "-c", code], limits=limits, **kwargs)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="nproc"):
        Limits(nproc=0)


def test_stdin_files_control_and_report_channels(sandbox):
    code = (
        "import os, sys\n"
        "data = os.read(int(os.environ['SANDBOX_CONTROL_FD']), 100)\n"
        "os.write(int(os.environ['SANDBOX_REPORT_FD']), b'report:' + data)\n"
        "print(sys.stdin.read(), open('f.txt').read())\n"
        "print('err', file=sys.stderr)\n"
    )
    result = run_py(sandbox, code, files={"f.txt": b"FILE"}, stdin=b"IN", control=b"CTL")
    assert result.returncode == 0
    assert result.stdout == b"IN FILE\n"
    assert result.stderr == b"err\n"
    assert result.report == b"report:CTL"
    assert not result.timed_out and not result.truncated


def test_identity_namespaces_and_environment(sandbox, monkeypatch):
    monkeypatch.setenv("HOST_SECRET_TOKEN", "leak")
    code = (
        "import os, socket\n"
        "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
        "print(os.getuid(), os.getgid(), caps[0], socket.gethostname(), os.getcwd())\n"
        "print('HOST_SECRET_TOKEN' in os.environ, os.getpid() < 10)\n"
        "print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'no-sys')\n"
    )
    lines = run_py(sandbox, code).stdout.decode().splitlines()
    assert lines[0] == "65534 65534 0000000000000000 sandbox /tmp"
    assert lines[1] == "False True"  # a clean environment and a fresh PID namespace
    assert lines[2] == "no-sys"  # /sys is not mounted at all


def test_filesystem_is_read_only_except_the_private_tmpfs(sandbox):
    code = (
        "import os\n"
        "for path in ['/x', '/usr/x', '/dev/x', '/dev/shm/x', 'f.txt', os.path.dirname(os.__file__) + '/x']:\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('denied', e.errno)\n"
        "open('/tmp/ok', 'w').write('fine'); print(open('/tmp/ok').read())\n"
    )
    out = run_py(sandbox, code, files={"f.txt": b"x"}).stdout.decode().splitlines()
    assert out[:-1] == ["denied 30"] * 6  # EROFS, including the files handed in
    assert out[-1] == "fine"


def test_no_network(sandbox):
    code = (
        "import socket\n"
        "for addr in [('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(addr); print('connected')\n"
        "    except OSError as e:\n"
        "        print('blocked', e.errno)\n"
    )
    assert run_py(sandbox, code).stdout.decode().split() == ["blocked", "101", "blocked", "101"]  # ENETUNREACH


def test_wall_timeout_kills_the_whole_tree(sandbox):
    marker = f"sandboxmark{secrets.token_hex(6)}"
    code = (
        "import subprocess, sys, time\n"
        f"for _ in range(3): subprocess.Popen([sys.executable, '-S', '-c', 'import time; time.sleep(600)', '{marker}'],"
        " start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    result = run_py(sandbox, code, limits=Limits(wall_seconds=1.5))
    assert result.timed_out and result.returncode is None
    assert processes_with(marker) == []


def test_processes_left_behind_die_with_the_run(sandbox):
    marker = f"sandboxmark{secrets.token_hex(6)}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-S', '-c', 'import time; time.sleep(600)', '{marker}'], "
        "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('bye')\n"
    )
    result = run_py(sandbox, code)
    assert result.stdout == b"bye\n" and result.returncode == 0
    assert processes_with(marker) == []


def test_output_cap_kills_the_program(sandbox):
    result = run_py(sandbox, "while True: print('x' * 1000)", limits=Limits(wall_seconds=10, output_bytes=10_000))
    assert result.truncated and not result.timed_out and result.returncode is None
    assert len(result.stdout) == 10_000


def test_cpu_limit(sandbox):
    result = run_py(sandbox, "while True: pass", limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert not result.timed_out
    assert result.returncode in (128 + 24, 128 + 9)  # bwrap's init reports SIGXCPU / SIGKILL as 128 + signal


def test_memory_limit(sandbox):
    code = "try:\n    x = bytearray(2 << 30)\n    print('allocated')\nexcept MemoryError:\n    print('refused')\n"
    assert run_py(sandbox, code, limits=Limits(memory_bytes=512 << 20)).stdout == b"refused\n"


def test_process_limit(sandbox):
    code = (
        "import os, time\n"
        "n = 0\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print(n, flush=True)\n"
        "os._exit(0)\n"
    )
    forked = int(run_py(sandbox, code, limits=Limits(nproc=6, wall_seconds=10)).stdout)
    assert 0 < forked < 6


def test_file_size_and_tmpfs_limits(sandbox):
    code = (
        "import os\n"
        "def fill(path, n):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(n): f.write(b'x' * (1 << 20))\n"
        "        return 'ok'\n"
        "    except OSError as e:\n"
        "        return e.errno\n"
        "print(fill('big', 10))\n"
        "print([fill(f'part{i}', 3) for i in range(6)])\n"
    )
    limits = Limits(file_size_bytes=4 << 20, tmpfs_bytes=10 << 20)
    out = run_py(sandbox, code, limits=limits).stdout.decode().splitlines()
    assert out[0] == "27"  # EFBIG: over the file size limit
    assert "28" in out[1]  # ENOSPC: the tmpfs is full


def test_unknown_sandbox_kind_is_rejected():
    with pytest.raises(ValueError, match="'bwrap'"):
        make_sandbox("docker")


def test_missing_bubblewrap_says_how_to_install():
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        BubblewrapSandbox(bwrap="bwrap-does-not-exist")


def test_unsafe_sandbox_needs_explicit_opt_in_and_warns(tmp_path):
    with pytest.warns(RuntimeWarning, match="UNSANDBOXED"):
        unsafe = make_sandbox("none")
    assert isinstance(unsafe, UnsafeLocalSandbox)
    code = "import os\nos.write(int(os.environ['SANDBOX_REPORT_FD']), b'r')\nprint(open('f').read())"
    result = unsafe.run([sys.executable, "-S", "-c", code], limits=FAST, files={"f": b"hello"})
    assert (result.returncode, result.stdout, result.report) == (0, b"hello\n", b"r")
    timed = unsafe.run([sys.executable, "-S", "-c", "import time; time.sleep(60)"], limits=Limits(wall_seconds=1))
    assert timed.timed_out
