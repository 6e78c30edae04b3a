"""The rollout-engine interface: generate with sampling logprobs, receive new weights, score given tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

    def sampler_state(self) -> list[dict[str, Any]]:
        """The random state the next sampled tokens draw from, one JSON-able entry per process that samples
        (`rl.rollout.sampler_state`); this base: the engine's own process."""
        from rl.rollout import sampler_state

        return [sampler_state.capture()]

    def set_sampler_state(self, state: list[dict[str, Any]]) -> bool:
        """Put back a `sampler_state()`: the same prompts on the same weights then draw the same tokens. False (and
        nothing changed) when `state` is of an engine with another number of sampling processes (or of another
        number of GPUs)."""
        from rl.rollout import sampler_state

        return len(state) == 1 and sampler_state.restore(state[0])

    def sleep(self) -> None:
        """Free accelerator memory while a learner sharing the device trains (engines that can; no-op here)."""
        return

    def wake_up(self) -> None:
        """Take the memory back after `sleep`, with the weights it had (new ones are loaded afterwards)."""
        return
