"""One PNG with reward and entropy per step for several runs, plus a table of their numbers.

    python examples/grpo_variants/plot.py RUN_DIR [RUN_DIR ...] --out curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    print(f"{'run':16} {'reward 1-3':>10} {'reward last 3':>13} {'entropy 1':>9} {'entropy last':>12} "
          f"{'held-out start':>14} {'held-out end':>12} {'s/step':>7}")
    for run in args.runs:
        records = [r for r in load(run) if "reward_mean" in r]
        evals = [r["eval_accuracy"] for r in load(run) if r.get("eval_accuracy") is not None]
        steps = [r["step"] for r in records]
        ax_r.plot(steps, [r["reward_mean"] for r in records], marker="o", ms=3, label=run.name)
        ax_h.plot(steps, [r["entropy"] for r in records], marker="o", ms=3, label=run.name)
        first = sum(r["reward_mean"] for r in records[:3]) / 3
        last = sum(r["reward_mean"] for r in records[-3:]) / 3
        per_step = sum(r["time_step_s"] for r in records) / len(records)
        print(f"{run.name:16} {first:10.3f} {last:13.3f} {records[0]['entropy']:9.3f} {records[-1]['entropy']:12.3f} "
              f"{evals[0] if evals else float('nan'):14.3f} {evals[-1] if evals else float('nan'):12.3f} {per_step:7.1f}")
    ax_r.set(xlabel="step", ylabel="mean reward (boxed_int + 0.2·format)", title="reward")
    ax_h.set(xlabel="step", ylabel="token entropy (nats)", title="entropy")
    for ax in (ax_r, ax_h):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
