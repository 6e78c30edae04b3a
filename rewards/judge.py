"""Judge LLM with a reference: an OpenAI-compatible chat endpoint grades the final answer against the reference.

    rewards:
      - judge: {base_url: http://localhost:8000/v1, model: Qwen/Qwen3-8B, cache_path: judge.sqlite}

What the judge sees: the question, the reference and the extracted final answer (the last `\\boxed{}`, or the
text after `</think>`), never the reasoning. Requests use temperature 0. The reply must end with a verdict in
the requested format (`parse_verdict`: a final `Yes`/`No` line, or `\\boxed{A|B|C}`); anything else, an HTTP
error or a timeout after bounded retries is a `Failed` outcome (counted, never a reward: the sample is unscored).
A judge whose requests keep ending unreachable is taken for down (`down_after`): samples fail at once, with one
probe request per `probe_every_s`, so a dead judge costs one wave of timeouts per run. Verdicts are cached
on (judge model, template id, question, reference, answer), in SQLite when `cache_path` is set, so a second
run with the same answers makes no request. `upgrade_only` asks the judge only where the math verifier did
not already say "correct".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rewards.contract import Failed
from rewards.settings import JudgeSettings
from rewards.text import after_thinking, answer_part, completion_text, last_boxed, prompt_text

TEMPLATE_VERSION = "v1"  # bump when a built-in template's text changes (it is part of the cache key)
_INTRO = ("You are grading a student's final answer to a question against the reference answer. Judge only "
          "whether the final answer means the same as the reference (equivalent numbers, expressions or "
          "wording count as the same); ignore formatting.\n\nQuestion:\n{question}\n\nReference answer:\n"
          "{reference}\n\nStudent's final answer:\n{answer}\n\n")
TEMPLATES = {
    "yes_no": _INTRO + "Is the student's final answer correct? End your reply with a line containing only Yes or No.",
    "abc": _INTRO + ("Grade it as A (correct), B (incorrect) or C (not attempted). End your reply with the "
                     "letter in a box: \\boxed{A}, \\boxed{B} or \\boxed{C}."),
}
_YES_NO = re.compile(r"^(?:(?:final\s+)?(?:verdict|answer|judgement|judgment)\s*[:：]\s*)?(yes|no)$", re.I)
_BOXED_LETTER = re.compile(r"\\boxed\{\s*([A-Za-z])\s*\}")
_ABC_SCORES = {"A": 1.0, "B": 0.0, "C": 0.0}


class VerdictError(ValueError):
    """A judge reply that does not end with a verdict in the requested format."""


def parse_verdict(reply: str, verdict: str = "yes_no") -> float:
    """The reward a judge reply gives: 1.0 (correct) or 0.0. Raises VerdictError for anything else.

    yes_no: the last non-empty line (after any `</think>`; markdown emphasis and a final `.` ignored, an
    optional `Verdict:` / `Answer:` prefix allowed) must be exactly `Yes` or `No`.
    abc: every `\\boxed{X}` in the reply must hold the same letter, one of A (1.0), B or C (0.0).
    """
    text = after_thinking(reply or "")
    if text is None:
        raise VerdictError("reply never closed its <think> block")
    if verdict == "abc":
        letters = {m.upper() for m in _BOXED_LETTER.findall(text)}
        if len(letters) != 1 or not letters <= _ABC_SCORES.keys():
            raise VerdictError(f"expected one of \\boxed{{A|B|C}}, found {sorted(letters) or 'none'}")
        return _ABC_SCORES[letters.pop()]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1].strip("*_#` ").rstrip(".!").strip("*_` ") if lines else ""
    match = _YES_NO.match(last)
    if not match:
        raise VerdictError(f"last line {last[:80]!r} is not Yes or No")
    return 1.0 if match.group(1).lower() == "yes" else 0.0


def final_answer(completion_text_: str, mode: str, max_chars: int, rendered_prompt: str | None = None) -> str | None:
    """The part of a completion the judge sees, or None when there is no answer (no call, reward 0)."""
    text = answer_part(completion_text_, rendered_prompt)
    if text is None:
        return None
    answer = last_boxed(text) if mode == "boxed" else text.strip()
    return answer[-max_chars:] if answer else None


def render(template: str, question: str, reference: str, answer: str) -> str:
    # str.replace, not str.format: questions and templates are full of LaTeX braces.
    return template.replace("{question}", question).replace("{reference}", reference).replace("{answer}", answer)


class VerdictCache:
    """Verdict cache: SQLite at `path` (shared across runs and processes), or a dict when path is None."""

    def __init__(self, path: str | None):
        self._lock = threading.Lock()
        self._mem: dict[str, float] = {}
        self._db = None
        if path:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(Path(path).expanduser()), check_same_thread=False, timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, score REAL NOT NULL, "
                             "reply TEXT, judge_model TEXT, template TEXT, created REAL)")
            self._db.commit()

    @staticmethod
    def key(model: str, template_id: str, question: str, reference: str, answer: str) -> str:
        return hashlib.sha256(json.dumps([model, template_id, question, reference, answer]).encode()).hexdigest()

    def get(self, key: str) -> float | None:
        with self._lock:
            if self._db is None:
                return self._mem.get(key)
            row = self._db.execute("SELECT score FROM verdicts WHERE key = ?", (key,)).fetchone()
            return None if row is None else row[0]

    def put(self, key: str, score: float, reply: str, model: str, template_id: str) -> None:
        with self._lock:
            if self._db is None:
                self._mem[key] = score
                return
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                             (key, score, reply, model, template_id, time.time()))
            self._db.commit()


class JudgeReward:
    """The `judge:` reward: async callable under the reward contract; counts `requests` and `cache_hits`."""

    def __init__(self, settings: JudgeSettings):
        self.s = settings
        self.model = settings.model or settings.model_path
        self.template = settings.template or TEMPLATES[settings.verdict]
        digest = hashlib.sha256(self.template.encode()).hexdigest()[:12]
        self.template_id = f"{TEMPLATE_VERSION}:{settings.verdict}:{digest}"
        self.cache = VerdictCache(settings.cache_path)
        self.base_url = settings.base_url
        self.requests = 0  # HTTP attempts made (retries included)
        self.cache_hits = 0
        self._server = None
        self._lock = threading.Lock()  # counters
        self._start_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="judge")
        self._unreachable_in_a_row = 0  # requests that used up every retry, since the last answer
        self._last_probe: float | None = None  # set while the judge is taken for down
        if settings.api_key_env and not os.environ.get(settings.api_key_env):
            raise ValueError(f"judge.api_key_env: environment variable {settings.api_key_env!r} is not set")

    async def __call__(self, prompts: list, completions: list, **columns: Any) -> list:
        s, loop = self.s, asyncio.get_running_loop()
        if self.base_url is None:
            await loop.run_in_executor(self._pool, self._start_server)
        refs = columns[s.reference_column]
        questions = columns[s.question_column] if s.question_column else [prompt_text(p) for p in prompts]
        texts = [completion_text(c) for c in completions]
        rendered = columns.get("rendered_prompt") or [None] * len(completions)
        rule = await loop.run_in_executor(self._pool, self._rule_verdicts, texts, refs, questions)
        gate = asyncio.Semaphore(s.max_concurrency)
        return list(await asyncio.gather(*(
            self._grade(gate, questions[i], refs[i], texts[i], rule[i], rendered[i]) for i in range(len(completions)))))

    def _rule_verdicts(self, texts: list[str], refs: list, questions: list) -> list:
        if not self.s.upgrade_only:
            return [None] * len(texts)
        from verifiers.math import verify_batch

        idx = [i for i, r in enumerate(refs) if r is not None]
        got = verify_batch([texts[i] for i in idx], [str(refs[i]) for i in idx],
                           questions=[questions[i] for i in idx], extract=tuple(self.s.extract))
        out: list = [None] * len(texts)
        for i, v in zip(idx, got):
            out[i] = v
        return out

    async def _grade(self, gate: asyncio.Semaphore, question: str, reference: Any, text: str, rule: Any,
                     rendered_prompt: str | None) -> Any:
        if reference is None:
            return None
        if rule is not None and rule.status == "ok" and rule.score == 1.0:
            return 1.0  # upgrade_only: the verifier already says correct
        if rule is not None and rule.status == "no_answer":
            return 0.0
        answer = final_answer(text, self.s.answer, self.s.max_answer_chars, rendered_prompt)
        if answer is None:
            return 0.0
        key = VerdictCache.key(self.model, self.template_id, question, str(reference), answer)
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self.cache_hits += 1
            return cached
        async with gate:
            reply = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._post, render(self.template, question, str(reference), answer))
        if isinstance(reply, Failed):
            return reply
        try:
            score = parse_verdict(reply, self.s.verdict)
        except VerdictError as e:
            return Failed(f"judge reply unparseable: {e}")
        self.cache.put(key, score, reply, self.model, self.template_id)
        return score

    def _post(self, prompt: str) -> str | Failed:
        """One chat completion with bounded retries, or at once `Failed` while the judge is down (see
        `JudgeSettings.down_after`)."""
        s = self.s
        with self._lock:
            if self._last_probe is not None:
                if time.monotonic() - self._last_probe < s.probe_every_s:
                    return Failed(f"judge down ({self._unreachable_in_a_row} requests in a row unreachable): "
                                  "not asked")
                self._last_probe = time.monotonic()  # this request is the probe
        reply = self._request(prompt)
        with self._lock:
            if isinstance(reply, Failed) and reply.reason.startswith("judge unreachable"):
                self._unreachable_in_a_row += 1
                if self._unreachable_in_a_row >= (s.down_after or s.max_concurrency) and self._last_probe is None:
                    self._last_probe = time.monotonic()
            elif not isinstance(reply, Failed) or not reply.reason.startswith("judge down"):
                self._unreachable_in_a_row, self._last_probe = 0, None
        return reply

    def _request(self, prompt: str) -> str | Failed:
        """One chat completion with bounded retries (connection errors, timeouts, 429, 5xx)."""
        s = self.s
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0.0, "max_tokens": s.max_tokens, **s.request_extra}).encode()
        headers = {"Content-Type": "application/json"}
        if s.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ[s.api_key_env]}"
        url, last = self.base_url.rstrip("/") + "/chat/completions", ""
        for attempt in range(s.max_retries + 1):
            if attempt:
                time.sleep(s.backoff_s * 2 ** (attempt - 1))
            with self._lock:
                self.requests += 1
            try:
                with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=s.timeout_s) as r:
                    raw = r.read()
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read()[:200]!r}"
                if e.code == 429 or e.code >= 500:
                    continue
                return Failed(f"judge request rejected: {last}")
            except (OSError, TimeoutError) as e:  # URLError, refused / reset connections, socket timeouts
                last = f"{type(e).__name__}: {e}"
                continue
            try:
                return json.loads(raw)["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                return Failed(f"judge response is not a chat completion: {raw[:200]!r}")
        return Failed(f"judge unreachable after {s.max_retries + 1} attempts: {last}")

    def _start_server(self) -> None:
        with self._start_lock:
            if self.base_url is None:
                from rewards.vllm_server import start_server_actor

                self._server, self.base_url = start_server_actor(self.s.model_path, self.model, self.s.server)
