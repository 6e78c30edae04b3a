"""verifiers.math plumbing: batches, threads, a Ray actor, killed workers, the CLI, import hygiene."""

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from verifiers import _math_pool
from verifiers.math import verify, verify_batch

# (completion, reference): numeric fast path, math-verify path, no answer, parse error, hedging.
CASES = [
    (r"\boxed{5}", "5"),
    (r"\boxed{6}", "5"),
    (r"\boxed{\frac{2}{4}}", "0.5"),
    (r"\boxed{(x+1)^2}", "x^2+2x+1"),
    (r"\boxed{(x+1)^2}", "x^2+2x+2"),
    (r"\boxed{1<x<2}", "(1,2)"),
    (r"\boxed{\{2,1\}}", r"\{1,2\}"),
    (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\boxed{y=2x+3}", "2x+3"),
    (r"\boxed{\text{Monday}}", r"\text{Tuesday}"),
    ("no answer here", "5"),
    (r"\boxed{5", "5"),
    (r"\boxed{5} \boxed{6}", "5"),
    (r"\boxed{\sin(2x)}", r"2\sin x\cos x"),
]
EXPECTED = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_verify_batch_equals_verify_one_by_one():
    completions, references = zip(*CASES, strict=True)
    batch = verify_batch(list(completions), list(references))
    single = [verify(c, r) for c, r in CASES]
    assert batch == single
    assert [v.score for v in batch] == EXPECTED


def test_verify_batch_keeps_order_with_repeated_answers():
    completions = [r"\boxed{(x+1)^2}", r"\boxed{x^2+2x+1}", r"\boxed{(x-1)^2}"] * 20
    verdicts = verify_batch(completions, ["x^2+2x+1"] * 60, workers=2)
    assert [v.score for v in verdicts] == [1.0, 1.0, 0.0] * 20
    assert [v.extracted for v in verdicts] == ["(x+1)^2", "x^2+2x+1", "(x-1)^2"] * 20


def test_verify_batch_questions_and_options():
    verdicts = verify_batch(
        ["#### (x+1)^2-x^2", "#### 2x+1"],
        ["2x+1", "2x+1"],
        questions=["Simplify $(x+1)^2-x^2$.", None],
        extract=("gsm8k",),
    )
    assert [v.score for v in verdicts] == [0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"completions": ["a"], "references": []},
        {"completions": ["a"], "references": ["1"], "questions": []},
        {"completions": ["a"], "references": ["1"], "workers": 0},
        {"completions": ["a"], "references": ["1"], "extract": ("nope",)},
    ],
)
def test_verify_batch_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        verify_batch(**kwargs)


def test_verify_batch_empty():
    assert verify_batch([], []) == []


def test_a_timeout_in_a_batch_leaves_the_other_rows_graded():
    completions = [r"\boxed{\prod_{k=1}^{10^{7}} k}"] + [rf"\boxed{{(x+{k})^2}}" for k in range(1, 7)]
    references = [r"\pi"] + [f"x^2+{2 * k}x+{k * k}" for k in range(1, 7)]
    verdicts = verify_batch(completions, references, timeout=2.0, workers=2)
    assert verdicts[0].status == "timeout"
    assert [(v.score, v.status) for v in verdicts[1:]] == [(1.0, "ok")] * 6


def test_from_many_threads_at_once():
    expected = [verify(c, r) for c, r in CASES]
    with ThreadPoolExecutor(max_workers=8) as ex:
        got = list(ex.map(lambda cr: verify(*cr), CASES * 4))
    assert got == expected * 4


def test_in_a_plain_thread_without_touching_signals():
    before = signal.getsignal(signal.SIGALRM)
    out = []
    t = threading.Thread(target=lambda: out.append(verify(r"\boxed{(x+2)^2}", "x^2+4x+4")))
    t.start()
    t.join()
    assert [(v.score, v.status) for v in out] == [(1.0, "ok")]
    assert signal.getsignal(signal.SIGALRM) is before


def test_a_worker_killed_from_outside_is_replaced():
    verify(r"\boxed{(x+3)^2}", "x^2+6x+9")  # make sure workers exist
    pool = _math_pool.get_pool(1)
    with pool._lock:
        procs = [w.proc for w in pool._workers]
    assert procs
    for proc in procs:  # these are the pool's own children
        proc.kill()
        proc.wait()
    v = verify(r"\boxed{(x+4)^2}", "x^2+8x+16")
    assert (v.score, v.status) == (1.0, "ok"), v


PLAIN_ANSWERS = [
    "5", "-5", "+5", "005", "0", "-0", "7", "1000", "1,000", "56088", "56,088", "56{,}088", "-56,088", "1,0000",
    "12,34", "5 6", "x = 5", "x=5", "x = -5", "x = 56,088", "n = 7", "AB = 5", "AB=56088", "abc = 5", "e = 5",
    "E = 5", "ee = 5", "eee = 7", "eA = 5", "x = 5 = 5", "x y = 5", "f(2) = 5", "9" * 120,
]
PLAIN_REFERENCES = [
    "5", "-5", "+5", "0", "7", "1000", "56088", "56,088", "5.0", "0.5", "1.5\\times10^{3}", r"\frac{10}{2}", "10\\%",
    r"2^{10}", r"\sqrt{25}", "2+3=5", "x = 5", "f(2) = 5", "AB = 5", r"\pi", r"5\text{ cm}", "$5$", r"\boxed{5}",
    "x", "9" * 120,
]


def test_the_plain_integer_short_cut_gives_the_full_paths_verdict(monkeypatch):
    """`_plain_integer` decides most answers (integers, `x = N`, `AB = N`) without the equation and evaluator
    machinery; with it switched off, every verdict must be the same, detail included."""
    from verifiers import math as vm

    opts = vm._options(("boxed",), "one", 5.0, 1e-6, 1000, 32)
    pairs = [(rf"so \boxed{{{a}}}.", r) for a in PLAIN_ANSWERS for r in PLAIN_REFERENCES]
    decided = sum(vm._plain_integer(vm.normalize(a), vm._reference(r), a) is not None
                  for a in PLAIN_ANSWERS for r in PLAIN_REFERENCES)
    assert decided > len(pairs) // 3  # the short cut is taken, not only declined
    fast = [vm._prepare(c, r, None, opts) for c, r in pairs]
    monkeypatch.setattr(vm, "_plain_integer", lambda answer, ref, raw: None)
    full = [vm._prepare(c, r, None, opts) for c, r in pairs]
    assert [(p, f) for p, f, s in zip(pairs, full, fast, strict=True) if f != s] == []


def test_importing_does_not_pull_in_heavy_or_toolkit_modules():
    code = (
        "import sys; from verifiers.math import verify;"
        "assert verify(r'\\boxed{1/2}', '0.5').score == 1.0;"
        "bad = [m for m in ('sympy', 'math_verify', 'ray', 'torch', 'rl', 'rewards') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_prints_a_summary(tmp_path):
    rows = [{"completion": c, "reference": r} for c, r in CASES]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "verifiers.math", str(path), "--workers", "2"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    table = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert int(table["rows"]) == len(CASES)
    assert float(table["accuracy"]) == pytest.approx(sum(EXPECTED) / len(CASES), abs=1e-4)
    assert int(table["no_answer"]) == 1 and int(table["parse_error"]) == 1
    assert "verdicts/s" in table["throughput"]


# --- inside a Ray actor (one actor, one module-scoped Ray) ---


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not an importable package
    started_here = not ray.is_initialized()  # another test module may have left Ray running
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started_here:
        ray.shutdown()


class GraderActor:
    """What a reward worker would do: call the verifier from inside an actor's (non-main) thread."""

    def grade(self, completions, references, timeout):
        from verifiers.math import verify, verify_batch

        single = verify(completions[0], references[0], timeout=timeout)
        return [single, *verify_batch(completions, references, timeout=timeout)], os.getpid()


def test_inside_a_ray_actor(ray_session):
    actor = ray_session.remote(GraderActor).remote()
    completions, references = [c for c, _ in CASES], [r for _, r in CASES]
    verdicts, pid = ray_session.get(actor.grade.remote(completions, references, 5.0), timeout=240)
    assert pid != os.getpid()
    assert [v.score for v in verdicts[1:]] == EXPECTED, verdicts
    assert verdicts[0] == verdicts[1]
    hang = [r"\boxed{\prod_{k=1}^{10^{7}} k}"]
    verdicts, _ = ray_session.get(actor.grade.remote(hang, [r"\pi"], 1.0), timeout=240)
    assert [v.status for v in verdicts] == ["timeout", "timeout"]
