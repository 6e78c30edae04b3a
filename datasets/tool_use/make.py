"""Generate the tool-use task: `python datasets/tool_use/make.py` (deterministic; rewrites the .jsonl files).

Multiplications of a 3-digit by a 2-digit number, which SmolLM2-135M cannot do in its head but can with the
`calculator` tool. train.jsonl: 2,000 rows; test.jsonl: 200 held-out rows whose (a, b) pairs never appear in train.
Each row: {"prompt": [{"role": "user", "content": ...}], "answer": int, "a": int, "b": int}.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
PROMPT = "What is {a} * {b}? Put the final answer in \\boxed{{}}."


def row(a: int, b: int) -> dict:
    return {"prompt": [{"role": "user", "content": PROMPT.format(a=a, b=b)}], "answer": a * b, "a": a, "b": b}


def main(seed: int = 2026, train_size: int = 2000, test_size: int = 200) -> None:
    rng = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < train_size + test_size:
        pairs.add((rng.randint(100, 999), rng.randint(10, 99)))
    ordered = sorted(pairs, key=lambda _: rng.random())
    for name, chunk in (("train", ordered[:train_size]), ("test", ordered[train_size:])):
        with (HERE / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row(a, b)) + "\n" for a, b in chunk)


if __name__ == "__main__":
    main()
