"""One PNG with reward, entropy and held-out accuracy per step for several runs, plus a table of their numbers.

    python examples/grpo_variants/plot.py RUN_DIR [RUN_DIR ...] --out curves.png

Held-out accuracy: every set the runs evaluated (`eval_accuracy/<name>`: solid for the first set, dashed for the
others), or `eval_accuracy` for runs with one set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def eval_keys(records: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in records for k in r if k.startswith("eval_accuracy/")))
    return keys or ["eval_accuracy"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_h, ax_e) = plt.subplots(1, 3, figsize=(16, 4.2))
    print(f"{'run':16} {'reward 1-3':>10} {'reward last 3':>13} {'entropy 1':>9} {'entropy last':>12} "
          f"{'held-out (step: value per set)':>40} {'s/step':>7}")
    for i, run in enumerate(args.runs):
        all_records = load(run)
        records = [r for r in all_records if "reward_mean" in r]
        steps = [r["step"] for r in records]
        color = f"C{i}"
        ax_r.plot(steps, [r["reward_mean"] for r in records], color=color, lw=1, label=run.name)
        ax_h.plot(steps, [r["entropy"] for r in records], color=color, lw=1, label=run.name)
        held_out = []
        for j, key in enumerate(eval_keys(all_records)):
            points = [(r["step"], r[key]) for r in all_records if r.get(key) is not None]
            if not points:
                continue
            name = key.split("/", 1)[1] if "/" in key else "held-out"
            ax_e.plot(*zip(*points), color=color, ls="-" if j == 0 else "--", marker="o", ms=3,
                      label=f"{run.name} ({name})")
            held_out.append(f"{name} " + " ".join(f"{s}:{v:.2f}" for s, v in points))
        first = mean([r["reward_mean"] for r in records[:3]])
        last = mean([r["reward_mean"] for r in records[-3:]])
        per_step = mean([r["time_step_s"] for r in records])
        print(f"{run.name:16} {first:10.3f} {last:13.3f} {records[0]['entropy']:9.3f} {records[-1]['entropy']:12.3f} "
              f"{' | '.join(held_out):>40} {per_step:7.1f}")
    ax_r.set(xlabel="step", ylabel="mean reward (boxed_int + 0.2·format)", title="train reward")
    ax_h.set(xlabel="step", ylabel="token entropy (nats)", title="entropy")
    ax_e.set(xlabel="step", ylabel="greedy accuracy", title="held-out accuracy", ylim=(-0.02, 1.02))
    for ax in (ax_r, ax_h, ax_e):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
