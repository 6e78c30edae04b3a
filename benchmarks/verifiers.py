"""Verifier throughput on this machine: `python benchmarks/verifiers.py [--only math|code]`.

Each section is one function registered in SECTIONS; it prints its own table and returns a dict of numbers.
"""

from __future__ import annotations

import argparse
import json

SECTIONS: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section only")
    args = parser.parse_args()
    results = {name: fn() for name, fn in SECTIONS.items() if args.only in (None, name)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
