"""Settings of a `rewards:` entry (`RewardConfig`) and of the model-based rewards (its `judge:` and `model:`):
pydantic only, so the drivers' config layer imports them without torch, Ray or vLLM."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TEMPLATE_FIELDS = ("{question}", "{reference}", "{answer}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class JudgeServerSettings(_Strict):
    max_model_len: int = Field(4096, ge=64)
    """vLLM `--max-model-len` of the local judge server."""
    kv_cache_gib: float = Field(1.0, gt=0.0)
    """GiB reserved for the server's KV cache (`--kv-cache-memory-bytes`; RAM on CPU)."""
    gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0)
    """GPU: fraction of the device the server may take (the learner shares it)."""
    enforce_eager: bool = True
    """Skip graph compilation (starts in seconds on CPU)."""
    start_timeout_s: float = Field(600.0, gt=0.0)
    """Give up if the server is not healthy after this long."""
    extra_args: list[str] = Field(default_factory=list)
    """More command-line arguments for `vllm.entrypoints.openai.api_server`."""


class JudgeSettings(_Strict):
    """A judge LLM grades the extracted final answer against the reference (temperature 0)."""

    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. `http://localhost:8000/v1` (`/chat/completions` is appended)."""
    model_path: str | None = None
    """Instead of `base_url`: a model path/hub id to serve with a local vLLM OpenAI server in a Ray actor."""
    model: str | None = None
    """Model name sent in each request (required with `base_url`; default with `model_path`: the path)."""
    api_key_env: str | None = None
    """Environment variable holding the API key (sent as `Authorization: Bearer`); None sends no key."""
    reference_column: str = "answer"
    """Dataset column with the reference answer (rows where it is null get no reward)."""
    question_column: str | None = None
    """Dataset column with the question shown to the judge (default: the prompt's last user message)."""
    answer: Literal["boxed", "after_think"] = "boxed"
    """What the judge sees of the completion: the last `\\boxed{}` (none → reward 0, no call) or all the text
    after `</think>`. Never the reasoning."""
    max_answer_chars: int = Field(2000, ge=1)
    """Longer extracted answers are cut to their last this many characters."""
    verdict: Literal["yes_no", "abc"] = "yes_no"
    """Reply format the template asks for: a final `Yes`/`No` line, or `\\boxed{A}` (correct) /
    `\\boxed{B}` (incorrect) / `\\boxed{C}` (not attempted)."""
    template: str | None = None
    """Custom prompt with `{question}`, `{reference}` and `{answer}` (it must ask for the `verdict` format);
    default: the built-in template of that format. Its text is part of the cache key."""
    max_tokens: int = Field(1024, ge=1)
    """Completion-token budget of one judge reply."""
    request_extra: dict = Field(default_factory=dict)
    """Extra fields merged into each request body (e.g. vLLM `structured_outputs`, `chat_template_kwargs`)."""
    timeout_s: float = Field(60.0, gt=0.0)
    """Seconds one HTTP request may take."""
    max_retries: int = Field(3, ge=0)
    """Retries after a connection error, timeout, HTTP 429 or 5xx (other HTTP errors are not retried)."""
    backoff_s: float = Field(1.0, ge=0.0)
    """Wait before retry k is backoff_s * 2**k seconds."""
    max_concurrency: int = Field(8, ge=1)
    """Requests in flight at once."""
    down_after: int | None = Field(None, ge=1)
    """After this many requests in a row end unreachable (every retry used up; default `max_concurrency`), the
    judge is taken for down: further samples are `Failed` at once, with one probe request per `probe_every_s`
    until one succeeds — a dead judge costs one wave of timeouts, not one per sample."""
    probe_every_s: float = Field(30.0, gt=0.0)
    """While the judge is down, how often one request is let through to see whether it is back."""
    cache_path: str | None = None
    """SQLite file caching verdicts across runs, keyed on (judge model, template, question, reference, answer);
    None keeps the cache in memory for this process only."""
    upgrade_only: bool = False
    """Hybrid: grade with the math verifier first and ask the judge only when it did not say "correct" (and
    an answer was found): recovers the verifier's false negatives without adding its false positives."""
    extract: list[str] = Field(default_factory=lambda: ["boxed"])
    """With `upgrade_only`: the math verifier's extraction rules."""
    server: JudgeServerSettings = JudgeServerSettings()
    """The local vLLM server started for `model_path`."""

    @model_validator(mode="after")
    def _check(self) -> JudgeSettings:
        if (self.base_url is None) == (self.model_path is None):
            raise ValueError("judge needs exactly one of `base_url:` (an OpenAI-compatible endpoint) or "
                             "`model_path:` (serve that model locally with vLLM)")
        if self.base_url is not None and not self.model:
            raise ValueError("judge with `base_url:` needs `model:` (the model name the endpoint serves)")
        if self.template is not None:
            missing = [f for f in TEMPLATE_FIELDS if f not in self.template]
            if missing:
                raise ValueError(f"judge.template lacks {', '.join(missing)}: it must contain {', '.join(TEMPLATE_FIELDS)}")
        return self


class RewardModelSettings(_Strict):
    """A learned reward model (`AutoModelForSequenceClassification`, one label) scores (prompt, response)."""

    path: str
    """Local directory or hub id of the reward model (e.g. one written by `python -m rewards.train_rm`)."""
    batch_size: int = Field(16, ge=1)
    """Sequences per forward pass."""
    max_length: int = Field(2048, ge=8)
    """Longer (prompt + response) renderings are cut from the left, keeping the response's end."""
    normalize: Literal["none", "batch", "running"] = "none"
    """Rescale scores: `batch` = z-score within the step's batch, `running` = z-score with running mean/std."""
    dtype: Literal["bfloat16", "float32"] = "float32"
    """Parameter dtype of the reward model."""
    torch_threads: int | None = Field(1, ge=1)
    """Intra-op threads of the reward model's process (few: it shares the cores with the learner)."""
    actor: bool = True
    """Run the model in a Ray actor (False: in the calling process)."""
    num_gpus: float = Field(0.0, ge=0.0)
    """GPUs (or a fraction) for the reward-model actor; 0 scores on CPU."""


class RewardConfig(_Strict):
    weight: float = 1.0
    """Weight in the summed reward."""
    name: str | None = None
    """A built-in reward (see `rewards.BUILTINS`): math, code, format, overlong, length, instructions, ..."""
    fn: str | None = None
    """A user function: `package.module:function` or `path/to/file.py:function`."""
    judge: JudgeSettings | None = None
    """A judge LLM grading the final answer against the reference (OpenAI-compatible endpoint or local vLLM)."""
    model: RewardModelSettings | None = None
    """A learned reward model (sequence classifier with one label) scoring (prompt, response)."""
    kwargs: dict = Field(default_factory=dict)
    """Options of a `name:`/`fn:` reward, passed as keyword arguments on every call (built-ins check the names)."""
    label: str | None = None
    """Name in the metrics `reward/<label>/...` (default: the built-in name, function name, `judge` or
    `reward_model`); needed when two entries would get the same one."""
    on_error: Literal["raise", "skip"] = "raise"
    """A reward that raises: `raise` stops the run naming the reward, the sample and its prompt; `skip` makes
    that sample's value None and counts it in `reward/<label>/errors`."""
    worker: bool = False
    """Run this `name:`/`fn:` reward in a Ray worker process of its own (CPU-heavy Python rewards then run in
    parallel with each other, outside the driver's GIL)."""
    timeout_s: float | None = Field(900.0, gt=0.0)
    """Seconds one call on a step's batch may take; one that has not returned by then leaves the batch unscored
    (counted in `reward/<label>/errors`; the run then stops on `trainer.max_unscored_frac`) instead of hanging the
    run. A plain function's thread cannot be stopped and runs on; null: wait forever."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RewardConfig:
        given = [k for k in ("name", "fn", "judge", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each rewards entry needs exactly one of `name:` (built-in), `fn:` (module:function), "
                             f"`judge:` (judge LLM) or `model:` (reward model); got {', '.join(given) or 'none'}")
        if self.kwargs and (self.judge is not None or self.model is not None):
            raise ValueError(f"`kwargs:` is for name:/fn: rewards; put {given[0]} options under `{given[0]}:`")
        return self
