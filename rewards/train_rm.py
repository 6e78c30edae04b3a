"""Train a reward model on preference pairs with TRL's RewardTrainer (Bradley-Terry loss on chosen vs rejected).

    python -m rewards.train_rm --data prefs.jsonl --model BASE --output runs/rm [--eval-data held_out.jsonl]

Each JSONL row: `{"prompt": str | messages, "chosen": str, "rejected": str}`. With a tokenizer that has a chat
template the pair is rendered as [user prompt, assistant response] (what `rewards.reward_model` scores at RL
time); otherwise as `prompt + response + eos`. The model is `AutoModelForSequenceClassification` with one
label, started from BASE (its score head is new). With `--eval-data`, the held-out pair accuracy (share of pairs
where chosen scores higher) is printed and written to `OUTPUT/eval.json`. Use the result as a reward with
`rewards: [{model: {path: OUTPUT}}]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_pairs(path: str) -> list[dict]:
    """Rows of a preference JSONL file; ValueError naming the file and 1-based row for a bad row."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"preference file {path!r} not found")
    rows = []
    for i, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: row {i} is not valid JSON ({e.msg})") from None
        missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks {', '.join(missing)} (needs prompt, chosen, rejected)")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _text(response: str | list[dict]) -> str:
    """A response given as messages → its last message's content."""
    return response[-1]["content"] if isinstance(response, list) else response


def _as_trl_row(row: dict, chat: bool) -> dict:
    text = _text
    if not chat:
        prompt = row["prompt"] if isinstance(row["prompt"], str) else "\n".join(m["content"] for m in row["prompt"])
        return {"prompt": prompt, "chosen": text(row["chosen"]), "rejected": text(row["rejected"])}
    prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": text(row["chosen"])}],
            "rejected": [{"role": "assistant", "content": text(row["rejected"])}]}


def pair_accuracy(model_dir: str, rows: list[dict], torch_threads: int | None = None) -> float:
    """Share of pairs whose chosen response scores higher than the rejected one."""
    from rewards.reward_model import RewardModelScorer

    scorer = RewardModelScorer(model_dir, torch_threads=torch_threads)
    chosen = scorer.score([r["prompt"] for r in rows], [_text(r["chosen"]) for r in rows])
    rejected = scorer.score([r["prompt"] for r in rows], [_text(r["rejected"]) for r in rows])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(rows)


def train(args: argparse.Namespace) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from datasets import Dataset

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rows = read_pairs(args.data)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=getattr(torch, args.dtype))
    model.config.pad_token_id = tokenizer.pad_token_id
    chat = bool(tokenizer.chat_template)
    dataset = Dataset.from_list([_as_trl_row(r, chat) for r in rows])
    config = RewardConfig(
        output_dir=str(Path(args.output) / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
        lr_scheduler_type=args.scheduler, warmup_steps=args.warmup_steps, logging_steps=10,
        save_strategy="no", report_to=[], bf16=args.dtype == "bfloat16", gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    out = Path(args.output)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rewards.train_rm", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", required=True, help="training pairs (JSONL: prompt, chosen, rejected)")
    parser.add_argument("--model", required=True, help="base model directory or hub id")
    parser.add_argument("--output", required=True, help="where the reward model and tokenizer are written")
    parser.add_argument("--eval-data", help="held-out pairs: report pair accuracy")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training pairs")
    parser.add_argument("--lr", type=float, default=1e-5, help="AdamW peak learning rate")
    parser.add_argument("--scheduler", default="linear", help="transformers LR schedule after warm-up (linear, cosine, constant_with_warmup)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--max-length", type=int, default=1024, help="longer pairs are dropped (TRL's filter)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="training dtype")
    parser.add_argument("--seed", type=int, default=0, help="seed (score-head init, data order)")
    parser.add_argument("--torch-threads", type=int, default=None, help="intra-op threads (default: all cores)")
    args = parser.parse_args(argv)
    try:
        read_pairs(args.data)
        held_out = read_pairs(args.eval_data) if args.eval_data else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = train(args)
    if held_out:
        acc = pair_accuracy(str(out), held_out, args.torch_threads)
        (out / "eval.json").write_text(json.dumps({"pair_accuracy": acc, "pairs": len(held_out)}) + "\n")
        print(f"held-out pair accuracy: {acc:.3f} ({len(held_out)} pairs)")
    print(f"reward model written to {out}")


if __name__ == "__main__":
    main()
