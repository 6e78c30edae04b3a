"""transformers `generate` rollout engine: same outputs as the vLLM engine, no extra dependency.

Slower than vLLM (left-padded static batches keep computing on finished sequences) but exact: the logprobs
come from the same modelling code the learner uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rl.rollout.base import Completion, RolloutEngine, SamplingSpec


class HFEngine(RolloutEngine):
    """`AutoModelForCausalLM.generate` over left-padded batches of `batch_size` sequences."""

    def __init__(self, model_path: str, *, dtype: str = "bfloat16", seed: int = 0, batch_size: int = 256, **_: object):
        from transformers import AutoModelForCausalLM, GenerationConfig

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        gen = GenerationConfig.from_pretrained(model_path) if _has_generation_config(model_path) else None
        eos = (gen.eos_token_id if gen else None) or self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = (gen.pad_token_id if gen else None) or self.model.config.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self.batch_size = batch_size
        torch.manual_seed(seed)  # as vLLM's engine seed: the same seed, the same sequence of samples

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        if spec.seed is not None:
            torch.manual_seed(spec.seed)
        flat = [p for p in prompts for _ in range(spec.n)]
        results: list[Completion] = []
        for start in range(0, len(flat), self.batch_size):
            results.extend(self._generate_batch(flat[start : start + self.batch_size], spec))
        return [results[i * spec.n : (i + 1) * spec.n] for i in range(len(prompts))]

    def _generate_batch(self, prompts: list[list[int]], spec: SamplingSpec) -> list[Completion]:
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        greedy = spec.temperature == 0.0
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=spec.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else spec.temperature,
            top_p=None if greedy else spec.top_p,
            top_k=None,
            eos_token_id=sorted(self.eos_ids | set(spec.stop_token_ids)),
            pad_token_id=self.pad_id,
            output_scores=True,  # processed scores (after temperature / top-p): the sampling distribution
            return_dict_in_generate=True,
        )
        tokens = out.sequences[:, width:]
        scores = torch.stack(out.scores, dim=1).float()  # [N, T, V]
        logprobs = torch.log_softmax(scores, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
        return [self._trim(row_tokens.tolist(), row_lp.tolist(), spec) for row_tokens, row_lp in zip(tokens, logprobs)]

    def _trim(self, ids: list[int], logprobs: list[float], spec: SamplingSpec) -> Completion:
        stops = self.eos_ids | set(spec.stop_token_ids)
        for i, tok in enumerate(ids):
            if tok in stops:
                return Completion(ids[: i + 1], logprobs[: i + 1], "stop")
        return Completion(ids, logprobs, "length")

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                if name not in params:
                    raise KeyError(f"HF engine: unknown parameter {name!r}")
                params[name].copy_(tensor)

    @torch.no_grad()
    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        ids = torch.tensor([prompt + completion], device=self.device)
        logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        target = torch.tensor(completion, device=self.device)
        return torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1).tolist()


def _has_generation_config(model_path: str) -> bool:
    from pathlib import Path

    return not Path(model_path).is_dir() or (Path(model_path) / "generation_config.json").is_file()
