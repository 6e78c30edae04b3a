"""The teacher: a frozen causal LM that scores the student's token sequences (and can generate).

A plain class (the Ray actor: `distill.actors.start_teacher`), testable without Ray.
`score` runs one forward pass per micro-batch over prompt + completion, collated and computed exactly as the
learner's (`rl.batching.collate` + `rl.policy.Policy.completion_logits`; by default in the shared-prompt layout,
so each distinct prompt of a micro-batch goes through the model once), and returns, at every completion
position, at the sampling temperature:
- `logprobs`: log T(x_t) of the token the student sampled (what `sampled_kl` needs);
- `topk_ids` / `topk_logprobs`: the teacher's k most likely tokens and their log-probabilities (k ≥ 1; the first
  is the teacher's argmax, for the top-1 agreement metric);
- `tail_logprob`: log of the teacher's mass outside its top-k, from the full logits (no 1 − Σ cancellation);
- optionally the full [T, V] log-probabilities (float32, one tensor per sequence) for full-vocabulary losses.
Generation (for GKD's off-policy steps) goes through the transformers rollout engine the teacher is loaded in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.batching import TrainBatch, collate
from rl.rollout import Completion, SamplingSpec
from rl.threads import set_torch_threads


@dataclass
class TeacherScores:
    """One sequence's teacher outputs, aligned with its completion tokens (plain lists: cheap through Ray)."""

    logprobs: list[float]  # [T]
    topk_ids: list[list[int]]  # [T][K]
    topk_logprobs: list[list[float]]  # [T][K]
    tail_logprob: list[float]  # [T]


class Teacher:
    """Loads `model_path` once (transformers, eval mode, no gradients) and scores / generates."""

    def __init__(self, model_path: str, *, dtype: str = "bfloat16", temperature: float = 1.0, top_k: int = 1,
                 micro_batch_size: int = 16, share_prompts: bool = True, torch_threads: int | None = None,
                 seed: int = 0):
        from rl.policy import Policy
        from rl.rollout.hf_engine import HFEngine

        set_torch_threads(torch_threads)
        self.engine = HFEngine(model_path, dtype=dtype, seed=seed)
        self.policy = Policy(self.engine.model.requires_grad_(False), tokenizer=None, is_lora=False)
        self.device = self.engine.device
        self.layout = "shared" if share_prompts else "padded"
        self.temperature, self.top_k, self.micro_batch_size = temperature, top_k, micro_batch_size

    @torch.no_grad()
    def score(self, prompts: list[list[int]], completions: list[list[int]],
              full: bool = False) -> tuple[list[TeacherScores], list[torch.Tensor] | None]:
        """Teacher outputs for each (prompt, completion) pair; with `full`, also each completion's [T, V]
        log-probabilities (float32, CPU). Returned as a pair so a Ray caller can leave the large second part in
        the object store (`num_returns=2`) and hand its reference straight to the learner."""
        scores: list[TeacherScores] = []
        dense: list[torch.Tensor] | None = [] if full else None
        for start in range(0, len(prompts), self.micro_batch_size):
            end = start + self.micro_batch_size
            batch_scores, batch_dense = self._score_batch(prompts[start:end], completions[start:end], full)
            scores.extend(batch_scores)
            if dense is not None:
                dense.extend(batch_dense)
        return scores, dense

    def _score_batch(self, prompts, completions, full: bool) -> tuple[list[TeacherScores], list[torch.Tensor]]:
        # the learner's collation and trunk + output layer at the completion positions only (prompt positions
        # never pay for [*, V]); in the shared layout each distinct prompt of the micro-batch runs once
        batch = TrainBatch(prompts, completions, [[0.0] * len(c) for c in completions], [0.0] * len(prompts))
        mb = collate(batch, list(range(len(prompts))), layout=self.layout, device=self.device)
        logits = self.policy.completion_logits(mb.inputs)
        logprobs = torch.log_softmax(logits.float() / self.temperature, dim=-1)  # [N, T, V]
        chosen = logprobs.gather(-1, mb.targets[..., None]).squeeze(-1)
        top_lp, top_ids = logprobs.topk(self.top_k, dim=-1)
        tail = torch.logsumexp(logprobs.scatter(-1, top_ids, -torch.inf), dim=-1)
        out, dense = [], []
        for i, c in enumerate(completions):
            n = len(c)
            out.append(TeacherScores(chosen[i, :n].tolist(), top_ids[i, :n].tolist(), top_lp[i, :n].tolist(),
                                     tail[i, :n].tolist()))
            if full:
                dense.append(logprobs[i, :n].cpu().clone())
        return out, dense

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        """`spec.n` teacher completions per prompt (logprobs are the teacher's sampling logprobs)."""
        return self.engine.generate(prompts, spec)

