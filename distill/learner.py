"""The distillation learner: `rl.learner.Learner` with a distillation term added to its per-micro-batch objective.

`objective` = the RL objective of the parent (PPO-clip on the batch's advantages: for `sampled_kl` those are the
per-token reverse-KL advantages, plus `reward_weight` × GRPO advantages when task rewards are mixed in; all zero
for `full_kl` / `gkd` without rewards, which then adds nothing) + `kl_coef` × the divergence of `loss.type`
(`distill/losses.py`) between the student's distribution at each completion position and the teacher's, either
on the teacher's top-k + tail buckets (`MicroBatch.extras` `teacher_topk_ids` [N, T, K], `teacher_topk_logprobs`
[N, T, K], `teacher_tail_logprob` [N, T]) or on the full vocabulary (the teacher's [T, V] log-probabilities handed
to `train_distill`, found through the `seq_index` extra [N, T]). The step's token-mean uses the global token
count, so micro-batch losses sum exactly.
Metric `top1_agreement`: fraction of completion positions where the student's argmax is the teacher's.
"""

from __future__ import annotations

import torch

from distill.losses import DIVERGENCES, masked_token_mean, topk_buckets
from rl.learner import Learner, LossNorms, MicroBatch, TrainBatch


class DistillLearner(Learner):
    """`Learner(..., loss_cfg=<distill.config loss section>)`; train with `train_distill`."""

    needs_logits = True  # the divergence and the top-1 agreement use the student's whole distribution

    def __init__(self, *args, loss_cfg, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cfg = loss_cfg
        self._teacher_dense: list[torch.Tensor] | None = None

    def train_distill(self, batch: TrainBatch, step: int, teacher_dense: list[torch.Tensor] | None = None) -> dict:
        """`train` with the teacher's full [T_i, V] log-probabilities of sequence i (full-vocabulary losses);
        through Ray, pass the teacher's object reference and the store hands the tensors over here."""
        self._teacher_dense = teacher_dense
        try:
            return self.train(batch, step)
        finally:
            self._teacher_dense = None

    def objective(self, mb: MicroBatch, logits: torch.Tensor, logprobs: torch.Tensor,
                  entropy: torch.Tensor, norms: LossNorms) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super().objective(mb, logits, logprobs, entropy, norms)
        cfg, mask, extras = self.loss_cfg, mb.loss_mask, mb.extras
        if cfg.type != "sampled_kl" and cfg.kl_coef > 0:
            student = torch.log_softmax(self._scaled(logits), dim=-1)
            if cfg.top_k is None:
                teacher = self._dense_rows(mb, student.shape)
            else:
                student, teacher = topk_buckets(student, extras["teacher_topk_ids"], extras["teacher_topk_logprobs"],
                                                extras["teacher_tail_logprob"])
            params = {"beta": cfg.beta} if cfg.type == "gkd" else {}
            divergence = masked_token_mean(DIVERGENCES[cfg.type](student, teacher, **params), mask, norms.num_tokens)
            loss = loss + cfg.kl_coef * divergence
            metrics["distill_loss"] = divergence.item()
        agree = (logits.detach().argmax(dim=-1) == extras["teacher_topk_ids"][..., 0]).float()
        metrics["top1_agreement"] = masked_token_mean(agree, mask, norms.num_tokens).item()
        return loss, metrics

    def _dense_rows(self, mb: MicroBatch, shape: torch.Size) -> torch.Tensor:
        """The teacher's full log-probabilities of the micro-batch's sequences, right-padded to [N, T, V]."""
        if self._teacher_dense is None:
            raise RuntimeError("a full-vocabulary loss needs the teacher's log-probabilities: call train_distill")
        out = torch.zeros(shape, dtype=torch.float32, device=mb.loss_mask.device)
        for k, index in enumerate(mb.extras["seq_index"][:, 0].tolist()):
            rows = self._teacher_dense[index][: shape[1]]
            out[k, : rows.shape[0]] = rows.to(out.device, torch.float32)
        return out
