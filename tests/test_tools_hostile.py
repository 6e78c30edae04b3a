"""The built-in `python` tool against hostile programs, through the real runner and bubblewrap sandbox.

Every case gets a response (never an exception), within the time limit, and leaves the host unharmed: nothing
reaches a server on the host, no file carrying the case's marker appears outside the sandbox, no process carrying
it survives. Probes print what they could do; a pass proves the attack failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path

import pytest
from host_probes import processes_with

from rl.tools import ToolCall, ToolRunner, python
from rl.tools.builtins import MAX_PYTHON_RESPONSE_CHARS, NO_OUTPUT

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 5.0
SLACK_S = 30.0  # sandbox start and teardown on a loaded machine; the point is that a response comes at all


@pytest.fixture(scope="module")
def runner():
    with ToolRunner([python], timeout_s=TIMEOUT_S, max_workers=2) as r:
        yield r


def run(runner: ToolRunner, code: str):
    result = runner.run([(ToolCall("python", {"code": code}), None)])[0]
    assert result.time_s < TIMEOUT_S + SLACK_S
    return result


def test_stdout_is_the_response(runner: ToolRunner) -> None:
    result = run(runner, "import math\nprint(math.factorial(20))\nprint('done')")
    assert result.content == "2432902008176640000\ndone" and not result.error


def test_an_exception_is_the_response(runner: ToolRunner) -> None:
    result = run(runner, "print('before')\n{}['missing']")
    assert result.error and not result.timed_out
    assert result.content.startswith("before\nTraceback (most recent call last):")
    assert result.content.endswith("KeyError: 'missing'")


def test_no_output_says_so(runner: ToolRunner) -> None:
    assert run(runner, "x = 1").content == NO_OUTPUT


def test_wrong_argument_type_is_an_error_response(runner: ToolRunner) -> None:
    result = runner.run([(ToolCall("python", {"code": 42}), None)])[0]
    assert result.error and "code must be a string" in result.content


def test_network_is_unreachable(runner: ToolRunner) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('pypi.org', 443)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=1).close(); print('connected')\n"
        "    except OSError:\n"
        "        print('blocked')\n"
    )
    try:
        result = run(runner, code)
        assert result.content == "blocked\nblocked\nblocked" and not result.error
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody knocked
    finally:
        server.close()


def test_writing_outside_its_tmp_fails_and_leaves_no_file(runner: ToolRunner) -> None:
    marker = f"hostile{secrets.token_hex(6)}"
    outside = [f"{d}/{marker}" for d in sorted({"/var/tmp", "/dev/shm", str(REPO), os.path.expanduser("~")})]
    code = (
        f"for path in {outside!r} + ['/{marker}', '/tmp/{marker}']:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('pwned')\n"
        "        print('wrote', path)\n"
        "    except OSError:\n"
        "        print('denied')\n"
    )
    result = run(runner, code)
    # the sandbox's own /tmp (its private tmpfs) is writable; it vanishes with the run
    assert result.content == "denied\n" * (len(outside) + 1) + f"wrote /tmp/{marker}"
    for path in [*outside, f"/{marker}", f"/tmp/{marker}"]:
        assert not os.path.exists(path), path


def test_reading_host_files_fails(runner: ToolRunner) -> None:
    code = (
        f"for p in {[str(REPO / 'pyproject.toml'), str(Path(__file__))]!r}:\n"
        "    try:\n"
        "        open(p).read(); print('visible')\n"
        "    except OSError:\n"
        "        print('hidden')\n"
    )
    assert run(runner, code).content == "hidden\nhidden"


def test_a_fork_bomb_is_answered_and_contained(runner: ToolRunner) -> None:
    marker = f"hostile{secrets.token_hex(6)}"
    code = (
        "import os, sys\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os.execv(sys.executable, [sys.executable, '-S', '-c',\n"
        f"                     'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', '{marker}'])\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = run(runner, code)
    assert result.error and result.timed_out
    assert f"killed at its {TIMEOUT_S:g} s time limit" in result.content
    assert processes_with(marker) == []


def test_an_infinite_loop_is_killed_at_the_limit(runner: ToolRunner) -> None:
    result = run(runner, "print('start', flush=True)\nwhile True:\n    pass\n")
    assert result.timed_out and result.error
    assert result.content.startswith("start\nError: the program was killed at its 5 s time limit")


def test_a_memory_bomb_is_an_error_response(runner: ToolRunner) -> None:
    result = run(runner, "x = bytearray(16 << 30)\nprint('allocated')")
    assert result.error and not result.timed_out and "MemoryError" in result.content


def test_endless_output_is_cut(runner: ToolRunner) -> None:
    result = run(runner, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert result.error and "printing more than" in result.content
    assert len(result.content) < MAX_PYTHON_RESPONSE_CHARS + 200 and "characters cut" in result.content


def test_the_runner_still_works_after_the_attacks(runner: ToolRunner) -> None:
    results = runner.run([(ToolCall("python", {"code": f"print({i} * 2)"}), None) for i in range(3)])
    assert [r.content for r in results] == ["0", "2", "4"]
