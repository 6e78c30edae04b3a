"""Checkpoints `output_dir/checkpoints/step_N/`: an HF model directory plus the training state, written into
`step_N.tmp`, flushed to disk (fsync) and renamed only when complete, so a crash never leaves a checkpoint that
looks valid. On resume a checkpoint that does not load (unreadable files, non-finite weights) is set aside as
`step_N.bad` and the previous one is used."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP_DIR = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """The complete, sound checkpoint with the highest step, or None. Leftover `*.tmp` directories are ignored; a
    complete-looking one that fails `checkpoint_problem` is renamed `step_N.bad` (kept for inspection) and
    `report`ed, and the next older one is tried."""
    found = []
    root = checkpoints_dir(output_dir)
    if root.is_dir():
        for d in root.iterdir():
            m = _STEP_DIR.match(d.name)
            if m and (d / STATE_FILE).is_file():
                found.append((int(m.group(1)), d))
    for _, d in sorted(found, reverse=True):
        problem = checkpoint_problem(d)
        if problem is None:
            return d
        bad = d.with_name(d.name + ".bad")
        shutil.rmtree(bad, ignore_errors=True)
        d.rename(bad)
        if report is not None:
            report(f"checkpoint {d} cannot be resumed from ({problem}); moved to {bad.name}, trying the one before")
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None: its state file must parse, and every tensor of its model
    (and LoRA adapter) files must load and be finite (read one tensor at a time)."""
    import torch
    from safetensors import safe_open

    try:
        load_state(checkpoint)
    except (OSError, ValueError) as e:
        return f"{STATE_FILE}: {e}"
    files = sorted(checkpoint.glob("*.safetensors")) + sorted((checkpoint / "adapter").glob("*.safetensors"))
    if not files:
        return "no *.safetensors model files"
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    tensor = f.get_tensor(name)
                    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                        return f"{file.name}: {name} holds NaN or inf"
        except Exception as e:  # a torn or foreign file: safetensors raises its own error types
            return f"{file.name}: {e}"
    return None


def save_checkpoint(output_dir: Path, step: int, write_model: Callable[[str], None], state: dict[str, Any],
                    keep_last: int) -> Path:
    """`write_model(dir)` fills the HF part (the learner does it, possibly in another process); then the trainer
    state is written last and the directory renamed into place. Older checkpoints beyond `keep_last` are removed."""
    root = checkpoints_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_model(str(tmp))
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=1))
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _fsync(root)
    _prune(root, keep_last)
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """Every file and directory under `directory` on disk (so that the rename publishes complete contents)."""
    for path in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
        _fsync(path)
    _fsync(directory)


def load_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def _prune(root: Path, keep_last: int) -> None:
    complete = sorted((int(m.group(1)), d) for d in root.iterdir() if (m := _STEP_DIR.match(d.name)))
    for _, d in complete[:-keep_last]:
        shutil.rmtree(d, ignore_errors=True)
    for d in root.glob("*.tmp"):
        shutil.rmtree(d, ignore_errors=True)
