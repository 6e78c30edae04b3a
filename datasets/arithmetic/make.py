"""Generate the arithmetic task: `python datasets/arithmetic/make.py` (deterministic; rewrites the .jsonl files).

train.jsonl: additions with 1- and 2-digit operands (a curriculum: the 1-digit ones give early reward signal).
test.jsonl: held-out 2-digit + 2-digit additions whose (a, b) pairs never appear in train.
Each row: {"prompt": [{"role": "user", "content": ...}], "answer": int, "a": int, "b": int, "digits": int}.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
PROMPT = "What is {a} + {b}? Put the final answer in \\boxed{{}}."


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
    print(f"train: {len(train)} rows, test: {len(test)} rows (2-digit, disjoint from train)")


if __name__ == "__main__":
    main()
