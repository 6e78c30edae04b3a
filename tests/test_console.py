"""What a run prints (`rl/logs.py`): by default the console has the progress bar, the step lines and the summary,
and the engine's, Ray's and vLLM's logs are in `output_dir/logs/`; `verbose=true` shows them on the console too."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]

CONSOLE_LINES = [
    r"step \d+: reward \S+ entropy .*",  # one per step (rl.grpo.step_line)
    r"GRPO reward \S+ .*\d+/\d+.*",  # the progress bar's last state
    r"reward per step:",  # the summary: a text curve
    r"step +\d+ +-?\d+\.\d+ *█*",
]
"""Every line the default console may show in this run."""
ENGINE_LOG = re.compile(r"\((?:RolloutWorker|Learner) pid=\d+\)|(?:INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d \[|"
                        r"Failed to load weights|Loading safetensors|Loading weights")
"""Ray's prefix of a forwarded actor line, vLLM's log format, and lines the engines print."""


def _grpo(config: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl.grpo", "--config", str(config), *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def test_the_console_has_the_step_lines_and_the_log_files_have_the_engine_logs(make_config, tmp_path: Path) -> None:
    out = _grpo(make_config(rollout={"backend": "vllm"}, trainer={"max_steps": 2, "save_every": 2}))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.rstrip() for line in out.stdout.splitlines() if line.strip()]
    unexpected = [line for line in lines if not any(re.fullmatch(p, line) for p in CONSOLE_LINES)]
    assert unexpected == [], unexpected[:10]
    assert [line.split(":")[0] for line in lines if re.match(r"step \d+:", line)] == ["step 1", "step 2"]
    assert "reward per step:" in lines and any(line.startswith("GRPO reward") for line in lines)
    assert not ENGINE_LOG.search(out.stderr), out.stderr[-3000:]

    logs = tmp_path / "run" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["driver.log", "learner_0.log", "rollout_worker_0.log"]
    engine = (logs / "rollout_worker_0.log").read_text()
    assert "Initializing a V1 LLM engine" in engine and "Loading safetensors" in engine  # vLLM's logger, tqdm
    assert "Failed to load weights" not in engine  # the benign reload warnings (tests/test_vllm_engine.py)
    assert "Loading weights" in (logs / "learner_0.log").read_text()  # transformers' progress bar in the learner
    assert re.search(r"INFO ray\b.*", (logs / "driver.log").read_text())  # Ray's own driver-side logging


def test_verbose_shows_the_engine_logs_on_the_console_too(make_config, tmp_path: Path) -> None:
    out = _grpo(make_config(trainer={"max_steps": 1, "save_every": 1}), "verbose=true")
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert re.search(r"\(Learner pid=\d+\)", console) and "Loading weights" in console  # forwarded by Ray
    assert "Loading weights" in (tmp_path / "run" / "logs" / "learner_0.log").read_text()  # and in its file
    assert re.search(r"step 1: reward", out.stdout)
