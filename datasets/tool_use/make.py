"""Generate the tool-use task: `python datasets/tool_use/make.py` (deterministic; rewrites the .jsonl files).

Multiplications of a 3-digit by a 2-digit number, which SmolLM2-135M cannot do in its head but can with the
`calculator` tool. train.jsonl: 2,000 rows; test.jsonl: 200 held-out rows whose (a, b) pairs never appear in train.
Each row: {"prompt": [{"role": "user", "content": ...}], "answer": int, "a": int, "b": int}.

cold_start.jsonl: 120 SFT rows (`python -m distill.offpolicy --stage sft`, TRL's conversational format with
`tools`) on 60 questions about other arithmetic than the task's (sums, differences, and products of other shapes:
2x2, 4x1 and 4x2 digits, never 3x2), two rows each, since SFT trains the last assistant turn: the `calculator`
call with the question's expression, and, after the tool's answer, `expression = result. \\boxed{result}`.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: the calculator's schema comes from rl.tools
PROMPT = "What is {a} * {b}? Put the final answer in \\boxed{{}}."


def row(a: int, b: int) -> dict:
    return {"prompt": [{"role": "user", "content": PROMPT.format(a=a, b=b)}], "answer": a * b, "a": a, "b": b}


def cold_start_rows(a: int, op: str, b: int, schemas: list[dict]) -> list[dict]:
    expression = f"{a} {op} {b}"
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}
    calling = [{"role": "user", "content": PROMPT.format(a=a, b=b).replace("*", op)},
               {"role": "assistant", "content": "", "tool_calls": [call]}]
    answering = [*calling, {"role": "tool", "name": "calculator", "content": str(result)},
                 {"role": "assistant", "content": f"{expression} = {result}. \\boxed{{{result}}}"}]
    return [{"messages": calling, "tools": schemas}, {"messages": answering, "tools": schemas}]


def cold_start(rng: random.Random, size: int) -> list[dict]:
    from rl.tools import load_tools, tool_schemas

    schemas = tool_schemas(load_tools(["calculator"]))
    shapes = [("+", (100, 9999), (10, 9999)), ("-", (1000, 9999), (10, 999)), ("*", (10, 99), (10, 99)),
              ("*", (1000, 9999), (2, 9)), ("*", (1000, 9999), (10, 99))]
    rows = []
    for i in range(size // 2):
        op, (a_lo, a_hi), (b_lo, b_hi) = shapes[i % len(shapes)]
        rows += cold_start_rows(rng.randint(a_lo, a_hi), op, rng.randint(b_lo, b_hi), schemas)
    return rows


def main(seed: int = 2026, train_size: int = 2000, test_size: int = 200, cold_start_size: int = 120) -> None:
    rng = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < train_size + test_size:
        pairs.add((rng.randint(100, 999), rng.randint(10, 99)))
    ordered = sorted(pairs, key=lambda _: rng.random())
    for name, chunk in (("train", ordered[:train_size]), ("test", ordered[train_size:])):
        with (HERE / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row(a, b)) + "\n" for a, b in chunk)
    with (HERE / "cold_start.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in cold_start(rng, cold_start_size))


if __name__ == "__main__":
    main()
