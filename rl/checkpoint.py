"""Checkpoints `output_dir/checkpoints/step_N/`: an HF model directory plus the training state, written into
`step_N.tmp` and renamed only when complete, so a crash never leaves a checkpoint that looks valid."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP_DIR = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None. Leftover `*.tmp` directories are ignored."""
    found = []
    root = checkpoints_dir(output_dir)
    if root.is_dir():
        for d in root.iterdir():
            m = _STEP_DIR.match(d.name)
            if m and (d / STATE_FILE).is_file():
                found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


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
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _prune(root, keep_last)
    return final


def load_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def _prune(root: Path, keep_last: int) -> None:
    complete = sorted((int(m.group(1)), d) for d in root.iterdir() if (m := _STEP_DIR.match(d.name)))
    for _, d in complete[:-keep_last]:
        shutil.rmtree(d, ignore_errors=True)
    for d in root.glob("*.tmp"):
        shutil.rmtree(d, ignore_errors=True)
