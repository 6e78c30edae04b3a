"""Learned reward model: `AutoModelForSequenceClassification` (one label) scores (prompt, response) pairs.

The pair is rendered with the reward model's own chat template (user prompt + assistant response), the way
`python -m rewards.train_rm` (TRL's RewardTrainer) rendered it in training; a tokenizer without a chat template
gets `prompt + response + eos`. Scoring is batched; by default the model lives in a Ray actor
(`RewardModelScorer` is the plain class, `RewardModelReward` the reward under the contract).
"""

from __future__ import annotations

import math
from typing import Any

from rewards.settings import RewardModelSettings
from rewards.text import completion_text


class RewardModelScorer:
    """Loads the reward model once; `score(prompts, responses)` returns one float per pair."""

    def __init__(self, path: str, *, batch_size: int = 16, max_length: int = 2048, dtype: str = "float32",
                 torch_threads: int | None = 1):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = "left"  # keep the end of the response, where the verdict usually is
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=getattr(torch, dtype))
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def render(self, prompt: str | list[dict], response: str) -> str:
        """The text the model scores: its chat template over [user prompt, assistant response]."""
        messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": response}], tokenize=False)
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in messages)
        return text + response + (self.tokenizer.eos_token or "")

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        import torch

        texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], add_special_tokens=False, padding=True,
                                   truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.no_grad():
                out += self.model(**batch).logits[:, 0].float().tolist()
        return out


class RewardModelReward:
    """The `model:` reward: scores from a `RewardModelScorer` (in a Ray actor unless `actor: false`),
    optionally z-scored within the batch or with running statistics."""

    def __init__(self, settings: RewardModelSettings):
        self.s = settings
        self._scorer: Any = None
        self._count, self._mean, self._m2 = 0, 0.0, 0.0  # Welford running statistics

    def _start(self) -> None:
        s = self.s
        kwargs = dict(batch_size=s.batch_size, max_length=s.max_length, dtype=s.dtype, torch_threads=s.torch_threads)
        if s.actor:
            import ray

            self._scorer = ray.remote(num_cpus=0, num_gpus=s.num_gpus)(RewardModelScorer).remote(s.path, **kwargs)
        else:
            self._scorer = RewardModelScorer(s.path, **kwargs)

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float]:
        if self._scorer is None:
            self._start()
        responses = [completion_text(c) for c in completions]
        if self.s.actor:
            import ray

            scores = ray.get(self._scorer.score.remote(prompts, responses))
        else:
            scores = self._scorer.score(prompts, responses)
        return self._normalize(scores)

    def _normalize(self, scores: list[float]) -> list[float]:
        if self.s.normalize == "none" or not scores:
            return scores
        if self.s.normalize == "batch":
            mean = sum(scores) / len(scores)
            std = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
        else:
            for x in scores:
                self._count += 1
                delta = x - self._mean
                self._mean += delta / self._count
                self._m2 += delta * (x - self._mean)
            mean, std = self._mean, math.sqrt(self._m2 / self._count)
        return [(x - mean) / (std + 1e-6) for x in scores]
