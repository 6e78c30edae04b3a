"""The rollout-engine interface: generate with sampling logprobs, receive new weights, score given tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: `n` completions per prompt of at most `max_new_tokens`. temperature 0 = greedy."""

    n: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)


@dataclass
class Completion:
    """One sampled completion: its tokens, the sampler's log-probability of each, and why it ended."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS / stop token) or "length" (hit max_new_tokens)
    loss_mask: list[int] | None = None  # 1 = sampled, 0 = inserted by the rollout (not trained on); None = all 1


class RolloutEngine(ABC):
    """A generation backend. Implementations: `VLLMEngine`, `HFEngine`."""

    @abstractmethod
    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        """For each prompt (token ids), `spec.n` completions; logprobs are of the sampling distribution
        (after temperature), aligned one-to-one with `token_ids`."""

    @abstractmethod
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the model's weights in place (HF parameter names); cached prefixes are dropped."""

    @abstractmethod
    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        """log π(completion[t] | prompt, completion[:t]) for every completion token, at temperature 1."""

    def sleep(self) -> None:
        """Free accelerator memory while a learner sharing the device trains (engines that can; no-op here)."""
        return

    def wake_up(self) -> None:
        """Take the memory back after `sleep`, with the weights it had (new ones are loaded afterwards)."""
        return
