"""The sandbox when the interpreter, its virtualenv or a read-only path lives under /tmp.

The sandbox's working directory is a private tmpfs mounted on /tmp; paths under /tmp must be bound after it
(read-only), and the rest of the host's /tmp must stay invisible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from verifiers.sandbox import WORKDIR, BubblewrapSandbox, Limits

REPO = Path(__file__).resolve().parent.parent
SECRET = "host-tmp-secret"
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]  # an unprivileged caller

# Runs inside the sandbox: what it can see of /tmp, and whether it can write into the venv.
PROBE = r"""
import json, os, sys
venv = sys.prefix
site = [os.path.join(r, d) for r, ds, _ in os.walk(os.path.join(venv, 'lib')) for d in ds if d == 'site-packages']
def can_write(path):
    try:
        open(path, 'w').write('x'); return 'wrote'
    except OSError as e:
        return e.errno
print(json.dumps({
    'prefix': venv, 'executable': sys.executable, 'cwd': os.getcwd(), 'uid': os.getuid(),
    'tmp': sorted(os.listdir('/tmp')), 'beside_venv': sorted(os.listdir(os.path.dirname(venv))),
    'site_packages': sorted(os.listdir(site[0])),
    'write_venv': can_write(os.path.join(venv, 'x')), 'write_cwd': can_write('x'),
}))
"""

# Runs with the venv's interpreter on the host: the sandbox it builds uses that interpreter.
DRIVER = r"""
import sys
from verifiers.sandbox import Limits, make_sandbox
sandbox = make_sandbox("bwrap")
assert sandbox.python == sys.executable, (sandbox.python, sys.executable)
result = sandbox.run([sandbox.python, "-c", sys.argv[1]], limits=Limits(wall_seconds=30))
sys.stdout.write(result.stdout.decode())
sys.stderr.write(result.stderr.decode())
sys.exit(result.returncode)
"""


def host_tmp_dir() -> Path:
    """A directory directly under /tmp (not $TMPDIR or pytest's basetemp, which may live elsewhere)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-tmp-venv-", dir=WORKDIR))
    path.chmod(0o755)
    return path


@pytest.fixture()
def tmp_dir():
    path = host_tmp_dir()
    (path / "secret.txt").write_text(SECRET)  # beside the venv, readable by anyone on the host
    (path / "secret.txt").chmod(0o644)
    yield path
    shutil.rmtree(path)


def make_venv(base_python: str, where: Path, copies: bool) -> Path:
    """A virtualenv at `where`; with copies=True its interpreter binary is a copy under /tmp too."""
    subprocess.run(
        [base_python, "-m", "venv", "--without-pip", *(["--copies"] if copies else []), str(where)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = where / "bin" / "python"
    site = python.parent.parent.joinpath("lib").glob("python*/site-packages")
    (next(site) / "installed-data.txt").write_text(SECRET)  # masked like any site-packages
    return python


def run_probe(python: Path, as_nobody: bool = False) -> dict:
    prefix = AS_NOBODY if as_nobody else []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*prefix, str(python), "-c", DRIVER, PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=WORKDIR,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_probe(seen: dict, tmp_dir: Path, venv: Path) -> None:
    assert seen["prefix"] == str(venv)
    assert seen["executable"] == str(venv / "bin" / "python")
    assert seen["uid"] == 65534
    assert seen["cwd"] == WORKDIR
    # Of the host's /tmp only the path down to the venv is there: not the secret beside it, nor anything else.
    assert seen["tmp"] == [tmp_dir.name]
    assert seen["beside_venv"] == [venv.name]
    assert seen["site_packages"] == []
    assert seen["write_venv"] == 30  # EROFS: the venv is bound read-only
    assert seen["write_cwd"] == "wrote"  # the private tmpfs stays writable


@pytest.mark.parametrize("copies", [False, True], ids=["venv-symlinks", "interpreter-copied"])
def test_interpreter_in_a_venv_under_tmp(tmp_dir, copies):
    venv = tmp_dir / "venv"
    python = make_venv(sys.executable, venv, copies)
    check_probe(run_probe(python), tmp_dir, venv)


def _nobody_can_run(python: str) -> bool:
    if not os.path.exists(python):
        return False
    proc = subprocess.run(
        [*AS_NOBODY, python, "-c", "import verifiers.sandbox"],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO)},
        cwd=WORKDIR,
    )
    return proc.returncode == 0


def test_venv_under_tmp_unprivileged_caller(tmp_dir):
    """Root runs an outer bwrap first; a normal user runs bwrap directly. This checks the latter from root."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the caller as an unprivileged user")
    venv = tmp_dir / "venv"
    # The caller (uid 65534) must be able to run the base interpreter and read the repository.
    base = next(
        (p for p in (os.path.realpath(sys.executable), "/usr/bin/python3") if _nobody_can_run(p)), None
    )
    if base is None:
        pytest.skip("no Python interpreter and repository readable by uid 65534 on this machine")
    python = make_venv(base, venv, copies=True)
    check_probe(run_probe(python, as_nobody=True), tmp_dir, venv)


def test_read_only_path_under_tmp_is_visible_and_the_rest_of_tmp_is_not(tmp_dir):
    data = tmp_dir / "data"
    data.mkdir()
    (data / "input.txt").write_text("visible")
    sandbox = BubblewrapSandbox(ro_paths=[str(data)])
    code = (
        f"import os\nprint(open('{data}/input.txt').read(), sorted(os.listdir('/tmp')), "
        f"os.listdir('{tmp_dir}'), os.path.exists('{tmp_dir}/secret.txt'))"
    )
    result = sandbox.run([sandbox.python, "-S", "-c", code], limits=Limits(wall_seconds=10))
    # when this test's own interpreter / venv lives under /tmp (a clone there), its directory is bound too
    own = {Path(p).parts[2] for p in (sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), sandbox.python)
           if p.startswith("/tmp/")}
    listing = sorted({tmp_dir.name} | own)
    assert result.stdout.decode().strip() == f"visible {listing} ['data'] False", result.stderr
    with pytest.raises(ValueError, match="clash"):  # a file handed in cannot take that name in the cwd
        sandbox.run([sandbox.python, "-S", "-c", "pass"], limits=Limits(), files={tmp_dir.name: b""})


def test_binding_tmp_itself_is_refused():
    with pytest.raises(ValueError, match="private working directory"):
        BubblewrapSandbox(ro_paths=[WORKDIR])
