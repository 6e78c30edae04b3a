"""Generate the arithmetic task: `python datasets/arithmetic/make.py` (deterministic; rewrites the .jsonl files).

train.jsonl: additions with 1- and 2-digit operands (a curriculum: the 1-digit ones give early reward signal).
test.jsonl: held-out 2-digit + 2-digit additions whose (a, b) pairs never appear in train.
train_mix.jsonl: the rows of train.jsonl, a seeded half of them with the demo's scaffold (`SYSTEM`, a worked
example) as their own system turn, the other half with none (the chat template's default system prompt): trained
on both, the skill holds without the scaffold (examples/arithmetic/README.md). Use it with `data.system_prompt`
unset, so that the rows without a system turn keep the template's default.
train_curriculum.jsonl: train_mix.jsonl with its first `SCAFFOLD_FIRST` rows all scaffolded: read in file order
(`data.shuffle: false`), the first 20 steps of 8 prompts learn the skill with the worked example, the rest keep it
with and without (trained on the mix from the start, the unscaffolded prompts learn `\\boxed{12}` for every sum:
the format reward without the skill; examples/arithmetic/README.md).
Each row: {"prompt": [{"role": "user", "content": ...}], "answer": int, "a": int, "b": int, "digits": int}
(train_mix and train_curriculum add "scaffold": bool).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
PROMPT = "What is {a} + {b}? Put the final answer in \\boxed{{}}."
SCAFFOLD_FIRST = 160
SYSTEM = "Solve the addition and give the result in \\boxed{}. Example: What is 12 + 34? 12 + 34 = 46. \\boxed{46}"


def row(a: int, b: int) -> dict:
    return {"prompt": [{"role": "user", "content": PROMPT.format(a=a, b=b)}], "answer": a + b, "a": a, "b": b,
            "digits": max(len(str(a)), len(str(b)))}


def main(seed: int = 0, test_size: int = 200, train_two_digit: int = 1800) -> None:
    rng = random.Random(seed)
    two_digit = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(two_digit)
    test = two_digit[:test_size]
    one_digit = [(a, b) for a in range(10) for b in range(10)]
    mixed = [(a, b) for a in range(10) for b in range(10, 100)] + [(a, b) for a in range(10, 100) for b in range(10)]
    train = one_digit * 2 + rng.sample(mixed, 400) + two_digit[test_size : test_size + train_two_digit]
    rng.shuffle(train)
    for name, pairs in (("train", train), ("test", test)):
        with (HERE / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row(a, b)) + "\n" for a, b in pairs)
    scaffold_rng = random.Random(seed + 1)  # its own generator: train.jsonl and test.jsonl stay as they were
    draws = [scaffold_rng.random() < 0.5 for _ in train]
    for name, first in (("train_mix", 0), ("train_curriculum", SCAFFOLD_FIRST)):
        with (HERE / f"{name}.jsonl").open("w") as f:
            for i, ((a, b), drawn) in enumerate(zip(train, draws)):
                r, scaffold = row(a, b), drawn or i < first
                if scaffold:
                    r["prompt"] = [{"role": "system", "content": SYSTEM}, *r["prompt"]]
                f.write(json.dumps({**r, "scaffold": scaffold}) + "\n")
    print(f"train: {len(train)} rows, test: {len(test)} rows (2-digit, disjoint from train), train_mix and train_curriculum:"
          f" {len(train)} rows each (about half with the scaffold system prompt)")


if __name__ == "__main__":
    main()
