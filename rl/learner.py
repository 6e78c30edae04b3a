"""The learner: owns the policy (full fine-tune or LoRA), the optimizer and the optional frozen reference.

A plain class (the Ray actor is `ray.remote(Learner)` in `rl/actors.py`), so it is testable without Ray.
Precision: parameters and AdamW state stay float32 (master weights) and the forward/backward runs under bf16
autocast when `model.dtype` is bfloat16 — pure-bf16 AdamW would round updates of size lr·g below a weight's
bf16 resolution (≈ 0.4 %) to zero. Weights leave the learner in `model.dtype`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rl.algos import POLICY_LOSSES, kl_per_token, token_entropy, token_logprobs
from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig


@dataclass
class TrainBatch:
    """One rollout batch, flattened to B*G sequences (plain lists, cheap to ship through Ray)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    old_logprobs: list[list[float]]  # sampling-time log π_old per completion token
    advantages: list[float]  # one per sequence
    # 0 on completion tokens the policy did not sample (e.g. the text a thinking budget inserts): they stay in
    # the input, so later tokens condition on them, but never enter the loss or the token count. None = all 1.
    loss_masks: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def mask(self, i: int) -> list[int]:
        return self.loss_masks[i] if self.loss_masks is not None else [1] * len(self.completion_ids[i])

    @property
    def num_completion_tokens(self) -> int:
        """Completion tokens that carry loss (the denominator of the global token-mean)."""
        return sum(sum(self.mask(i)) for i in range(len(self)))


class Learner:
    """Computes the GRPO loss over micro-batches, steps AdamW, and hands out weights and checkpoints."""

    def __init__(
        self,
        model_path: str,
        model_cfg: ModelConfig,
        trainer_cfg: TrainerConfig,
        algo_cfg: AlgorithmConfig,
        temperature: float,
        resume_from: str | None = None,
    ):
        from rl.policy import load_policy, load_reference

        torch.set_num_threads(trainer_cfg.torch_threads or os.cpu_count())
        torch.manual_seed(trainer_cfg.seed)
        self.trainer_cfg, self.algo_cfg, self.temperature = trainer_cfg, algo_cfg, temperature
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.compute_dtype = getattr(torch, model_cfg.dtype)
        self.policy = load_policy(model_path, model_cfg, self.device, resume_from)
        self.reference = load_reference(model_path, self.compute_dtype, self.device) if algo_cfg.kl_beta > 0 else None
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=trainer_cfg.lr, weight_decay=trainer_cfg.weight_decay)
        warmup = trainer_cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        if resume_from is not None:
            self._load_training_state(Path(resume_from))

    # ---- training -------------------------------------------------------------------------------------------

    def train(self, batch: TrainBatch) -> dict[str, float]:
        """`trainer.updates_per_batch` optimizer steps on the batch; returns metrics averaged over them."""
        self.policy.model.train()
        totals: dict[str, float] = {}
        mu = self.trainer_cfg.updates_per_batch
        for _ in range(mu):
            for key, value in self._optimizer_step(batch).items():
                totals[key] = totals.get(key, 0.0) + value / mu
        totals["lr"] = self.scheduler.get_last_lr()[0]
        return totals

    def _optimizer_step(self, batch: TrainBatch) -> dict[str, float]:
        num_tokens = batch.num_completion_tokens
        metrics: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for micro in self._micro_batches(batch):
            loss, micro_metrics = self._micro_loss(micro, num_tokens)
            loss.backward()
            for key, value in micro_metrics.items():
                metrics[key] = metrics.get(key, 0.0) + value
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.trainer_cfg.max_grad_norm).item()
        self.optimizer.step()
        self.scheduler.step()
        return metrics

    def _micro_batches(self, batch: TrainBatch) -> list[dict[str, torch.Tensor]]:
        """Sequences sorted by length (less padding), cut into micro-batches of `micro_batch_size`."""
        order = sorted(range(len(batch)), key=lambda i: len(batch.prompt_ids[i]) + len(batch.completion_ids[i]))
        size = self.trainer_cfg.micro_batch_size
        return [
            self._collate([batch.prompt_ids[i] for i in idx], [batch.completion_ids[i] for i in idx],
                          [batch.old_logprobs[i] for i in idx], [batch.advantages[i] for i in idx],
                          [batch.mask(i) for i in idx])
            for idx in (order[s : s + size] for s in range(0, len(order), size))
        ]

    def _collate(self, prompts, completions, old_logprobs, advantages, loss_masks) -> dict[str, torch.Tensor]:
        seq_len = max(len(p) + len(c) for p, c in zip(prompts, completions))
        comp_len = max(len(c) for c in completions)
        n = len(prompts)
        input_ids = torch.zeros(n, seq_len, dtype=torch.long)
        attention = torch.zeros(n, seq_len, dtype=torch.long)
        targets = torch.zeros(n, comp_len, dtype=torch.long)
        positions = torch.zeros(n, comp_len, dtype=torch.long)
        old = torch.zeros(n, comp_len)
        mask = torch.zeros(n, comp_len)
        for i, (p, c, lp, m) in enumerate(zip(prompts, completions, old_logprobs, loss_masks)):
            input_ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            attention[i, : len(p) + len(c)] = 1
            targets[i, : len(c)] = torch.tensor(c)
            # the logits at position t predict token t + 1: completion token k is predicted at len(p) - 1 + k
            positions[i, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
            old[i, : len(c)] = torch.tensor(lp)
            mask[i, : len(c)] = torch.tensor(m, dtype=torch.float32)
        tensors = dict(input_ids=input_ids, attention_mask=attention, targets=targets, positions=positions,
                       old_logprobs=old, loss_mask=mask, advantages=torch.tensor(advantages, dtype=torch.float32))
        return {k: v.to(self.device) for k, v in tensors.items()}

    def _micro_loss(self, mb: dict[str, torch.Tensor], num_tokens: int) -> tuple[torch.Tensor, dict[str, float]]:
        with self._autocast():
            logits = self.policy.completion_logits(mb["input_ids"], mb["attention_mask"], mb["positions"])
        logits = logits.float() / self.temperature
        logprobs = token_logprobs(logits, mb["targets"])
        loss_fn = POLICY_LOSSES[self.algo_cfg.loss.type]
        loss, metrics = loss_fn(
            logprobs, mb["old_logprobs"], mb["advantages"], mb["loss_mask"],
            eps_low=self.algo_cfg.loss.eps_low, eps_high=self.algo_cfg.loss.eps_high,
            num_tokens_in_global_batch=num_tokens,
        )
        mask = mb["loss_mask"]
        metrics["entropy"] = ((token_entropy(logits.detach()) * mask).sum() / num_tokens).item()
        metrics["mismatch_kl"] = (((mb["old_logprobs"] - logprobs.detach()) * mask).sum() / num_tokens).item()
        if self.reference is not None:
            with torch.no_grad(), self._autocast():
                ref_logits = self.reference.completion_logits(mb["input_ids"], mb["attention_mask"], mb["positions"])
            ref_logprobs = token_logprobs(ref_logits.float() / self.temperature, mb["targets"])
            kl = (kl_per_token(logprobs, ref_logprobs, self.algo_cfg.kl_estimator) * mask).sum() / num_tokens
            loss = loss + self.algo_cfg.kl_beta * kl
            metrics["kl_ref"] = kl.item()
        return loss, metrics

    def _autocast(self):
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    # ---- weights and checkpoints ----------------------------------------------------------------------------

    def weights(self) -> list[tuple[str, torch.Tensor]]:
        """HF-named weights for the rollout engines (LoRA merged), in the compute dtype, on CPU."""
        return [(name, t.detach().to("cpu", self.compute_dtype)) for name, t in self.policy.merged_weights()]

    @torch.no_grad()
    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        """log π_θ of each completion token at temperature 1 (as the engines' `score`)."""
        self.policy.model.eval()
        mb = self._collate([prompt], [completion], [[0.0] * len(completion)], [0.0], [[1] * len(completion)])
        with self._autocast():
            logits = self.policy.completion_logits(mb["input_ids"], mb["attention_mask"], mb["positions"])
        return token_logprobs(logits.float(), mb["targets"])[0].tolist()

    def save(self, directory: str) -> None:
        """HF-format model (+ adapter for LoRA), optimizer, scheduler and RNG state into `directory`."""
        path = Path(directory)
        self.policy.save_pretrained(path)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            path / "training_state.pt",
        )

    def _load_training_state(self, path: Path) -> None:
        state = torch.load(path / "training_state.pt", weights_only=False, map_location="cpu")  # RNG states must stay on CPU; the optimizer moves its own state
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
