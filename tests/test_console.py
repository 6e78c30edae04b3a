"""What a run prints (`rl/logs.py`): by default the console has the progress bar, the step lines and the summary,
and the engine's, Ray's and vLLM's logs are in `output_dir/logs/`; `verbose=true` shows them on the console too."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from rl.logs import close_driver_logging, setup_driver_logging
from rl.weight_sync.engine_loader import RELOAD_WARNING, ExpectedReloadWarnings, layers_that_load_nothing

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_verbose_shows_the_engine_logs_on_the_console_too(make_config, tmp_path: Path) -> None:
    out = _grpo(make_config(trainer={"max_steps": 1, "save_every": 1}), "verbose=true")
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert re.search(r"\(Learner pid=\d+\)", console) and "Loading weights" in console  # forwarded by Ray
    assert "Loading weights" in (tmp_path / "run" / "logs" / "learner_0.log").read_text()  # and in its file
    assert re.search(r"step 1: reward", out.stdout)


def test_the_driver_logs_everything_to_its_file_and_only_what_needs_the_user_to_the_console(tmp_path: Path,
                                                                                             capsys) -> None:
    setup_driver_logging(tmp_path)
    try:
        logging.getLogger("vllm.engine").warning("engine noise")
        logging.getLogger("transformers.tokenization").warning("library warning")
        logging.getLogger("ray").info("Started a local Ray instance.")
        warnings.warn("a deprecation somewhere in torch", FutureWarning, stacklevel=1)
        logging.getLogger("rl.actors").warning("rollout worker 0 died: restarting it")
        logging.getLogger("rewards").warning("reward 'judge': 3 of 8 samples not graded")
        logging.getLogger("ray.worker").error("a library's error")
        logging.getLogger("rl.session").info("our own info")
    finally:
        close_driver_logging()
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: rollout worker 0 died: restarting it", "warning: reward 'judge': 3 of 8 samples not graded",
                   "error: a library's error"]
    log = (tmp_path / "logs" / "driver.log").read_text()
    for text in ("engine noise", "library warning", "Started a local Ray instance.", "a deprecation somewhere",
                 "rollout worker 0 died", "a library's error", "our own info"):
        assert text in log, text


def test_verbose_driver_logging_shows_everything(tmp_path: Path, capsys) -> None:
    setup_driver_logging(tmp_path, verbose=True)
    try:
        logging.getLogger("vllm.engine").info("engine info")
    finally:
        close_driver_logging()
    assert capsys.readouterr().err == "engine info\n"
    logging.getLogger("vllm.engine").warning("after the run")  # the run's handlers are gone
    assert "after the run" not in (tmp_path / "logs" / "driver.log").read_text()


class _Rope(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cos_sin_cache", torch.ones(4), persistent=False)


class _Norm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))
        self.register_buffer("stats", torch.zeros(4))  # persistent: a checkpoint has it


def test_only_config_derived_and_tied_layers_may_load_nothing() -> None:
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(8, 4)
    model.rope = _Rope()
    model.norm = _Norm()
    model.proj = torch.nn.Linear(4, 4)
    model.head = torch.nn.Linear(4, 8, bias=False)
    model.head.weight = model.embed.weight  # tied: the later module is the alias
    assert layers_that_load_nothing(model) == {"_Rope"}  # head shares Linear with proj, which loads its own
    model.proj = torch.nn.Identity()
    assert layers_that_load_nothing(model) == {"_Rope", "Linear"}
    model.head.weight = torch.nn.Parameter(torch.ones(8, 4))  # untied: the head must receive its weight
    assert layers_that_load_nothing(model) == {"_Rope"}

    quiet = ExpectedReloadWarnings({"_Rope"})
    record = logging.LogRecord("vllm", logging.WARNING, __file__, 1, RELOAD_WARNING, ("_Rope",), None)
    other = logging.LogRecord("vllm", logging.WARNING, __file__, 1, RELOAD_WARNING, ("Linear",), None)
    assert not quiet.filter(record) and quiet.filter(other)
