"""Run output: one JSON object per step in `metrics.jsonl`, TensorBoard events, `curves.png`, a text curve; the
console and progress bar a run prints to."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends step metrics to `output_dir/metrics.jsonl` (and TensorBoard under `output_dir/tb`)."""

    def __init__(self, output_dir: Path, tensorboard: bool = True, resume_step: int = 0):
        self.path = output_dir / "metrics.jsonl"
        self.records = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        # Steps after the checkpoint we resume from were lost with the run, and a line torn by a crash or a full
        # disk is no record: rewrite the file without them (atomically) so it stays a curve.
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        os.replace(tmp, self.path)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir / "tb"), purge_step=resume_step + 1)

    def log(self, record: dict[str, Any]) -> None:
        clean = {k: _json_safe(v) for k, v in record.items()}
        self.records.append(clean)
        with self.path.open("a") as f:  # one write of the whole line, on disk before the step counts as logged
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            for key, value in clean.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, clean["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; lines that are not a JSON object (torn by a crash or a full disk) are
    skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Reward (and held-out accuracy, when evaluated) and entropy vs step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    evals = [(k, "held-out accuracy" + (f" ({k.split('/', 1)[1]})" if "/" in k else "")) for k in eval_keys(records)]
    for key, label in (("reward_mean", "train reward"), *evals):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax_r.plot(*zip(*points), marker="o" if key.startswith("eval") else None, label=label)
    ax_r.set_xlabel("step")
    ax_r.set_title("reward")
    ax_r.legend()
    points = [(r["step"], r["entropy"]) for r in records if r.get("entropy") is not None]
    if points:
        ax_h.plot(*zip(*points), color="tab:orange")
    ax_h.set_xlabel("step")
    ax_h.set_title("token entropy (nats)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def text_curve(records: list[dict[str, Any]], key: str = "reward_mean", width: int = 40) -> str:
    """A terminal-friendly curve: one line per step (at most 30 lines) with a bar proportional to `key`."""
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    if not points:
        return ""
    stride = max(1, math.ceil(len(points) / 30))
    shown = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    top = max(abs(v) for _, v in points) or 1.0
    return "\n".join(f"step {s:>5}  {v:7.3f}  {'█' * round(width * max(v, 0) / top)}" for s, v in shown)


def console() -> Any:
    """The rich console a run prints its step lines to."""
    from rich.console import Console

    # soft_wrap: one line per step even when stdout is a pipe (CI logs), where the width defaults to 80.
    return Console(highlight=False, soft_wrap=True)


def progress_bar(out: Any) -> Any:
    """A rich progress bar (description, bar, steps done / total, elapsed, remaining) on the console `out`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=out, transient=False)


def eval_keys(records: list[dict[str, Any]]) -> list[str]:
    """The held-out accuracy keys of a run: `eval_accuracy/<name>` per named set, else `eval_accuracy`."""
    keys = list(dict.fromkeys(k for r in records for k in r if k.startswith("eval_accuracy/")))
    return keys or ["eval_accuracy"]


def eval_summary(records: list[dict[str, Any]]) -> str | None:
    """The line `held-out accuracy: first (step a) → last (step b)` (one per held-out set), when the run evaluated
    at least twice."""
    lines = []
    for key in eval_keys(records):
        evals = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if len(evals) < 2:
            return None
        name = f" ({key.split('/', 1)[1]})" if "/" in key else ""
        lines.append(f"held-out accuracy{name}: {evals[0][1]:.3f} (step {evals[0][0]}) → {evals[-1][1]:.3f} "
                     f"(step {evals[-1][0]})")
    return "\n".join(lines)


def eval_text(r: dict[str, Any]) -> str:
    """` eval_acc 0.650`, or per held-out set: ` eval_acc scaffold 0.650 plain 0.600`; empty if not evaluated."""
    per_set = [(k.split("/", 1)[1], v) for k, v in r.items() if k.startswith("eval_accuracy/")]
    if per_set:
        return " eval_acc " + " ".join(f"{name} {v:.3f}" for name, v in per_set)
    return f" eval_acc {r['eval_accuracy']:.3f}" if "eval_accuracy" in r else ""
