"""The learner: owns the policy (full fine-tune or LoRA), the optimizer and the optional frozen reference.

A plain class (the Ray actor is `ray.remote(Learner)` in `rl/actors.py`), so it is testable without Ray.
Precision (`trainer.precision`, for `model.dtype: bfloat16`): bf16 parameters with float32 master weights and
gradient accumulation in the optimizer (`rl/precision.py`), or float32 parameters under bf16 autocast. Either
way AdamW's state and update are float32 — pure-bf16 AdamW would round updates of size lr·g below a weight's
bf16 resolution (≈ 0.4 %) to zero — and checkpoints hold the float32 weights. Weights leave the learner in
`model.dtype`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from transformers import get_scheduler

from rl.algos import (
    TOKEN_LOSSES,
    EntropyController,
    aggregate,
    clip_cov_mask,
    kl_cov_penalty,
    kl_per_token,
    mismatch_kl,
    mismatch_weights,
    token_logprobs,
    token_logprobs_and_entropy,
)
from rl.batching import LossNorms, MicroBatch, TrainBatch, collate, pad_rows, plan_micro_batches
from rl.config import AlgorithmConfig, ModelConfig, TrainerConfig
from rl.distributed import ProcessGroupSpec, World, merge_from_ranks
from rl.precision import MasterWeights
from rl.threads import set_torch_threads

__all__ = ["Learner", "LossNorms", "MicroBatch", "TrainBatch"]


class Learner:
    """Computes the policy loss over micro-batches, steps AdamW, and hands out weights and checkpoints.

    `objective` is the per-micro-batch loss; subclasses (e.g. distillation) override it.
    """

    # Whether `objective` needs the logits [N, T, V] of every completion position (distillation's full-distribution
    # losses). Without, the output layer runs only where the loss mask is 1 and `objective` gets logits=None.
    needs_logits = False

    def __init__(
        self,
        model_path: str,
        model_cfg: ModelConfig,
        trainer_cfg: TrainerConfig,
        algo_cfg: AlgorithmConfig,
        temperature: float,
        resume_from: str | None = None,
        max_completion_tokens: int = 1,
        process_group: ProcessGroupSpec | None = None,
    ):
        from rl import distributed
        from rl.policy import load_policy, load_reference

        set_torch_threads(trainer_cfg.torch_threads)
        torch.manual_seed(trainer_cfg.seed)
        self.trainer_cfg, self.algo_cfg, self.temperature = trainer_cfg, algo_cfg, temperature
        self.max_completion_tokens = max_completion_tokens
        # one of `trainer.learners` ranks (from `process_group`, or torchrun's environment); size 1: unsharded
        self.world: World = distributed.join(process_group)
        self.device = distributed.device()
        self.compute_dtype = getattr(torch, model_cfg.dtype)
        self.policy = load_policy(model_path, model_cfg, self.device, resume_from)
        self.layout = micro_batch_layout(trainer_cfg, model_cfg)
        self.reference = load_reference(model_path, self.compute_dtype, self.device) if algo_cfg.kl_beta > 0 else None
        bf16_params = self.compute_dtype != torch.float32 and trainer_cfg.precision == "bf16_params"
        self.masters: MasterWeights | None = None
        if self.world.sharded:  # float32 shards; with bf16_params FSDP2 computes in bf16 and reduces in float32
            distributed.shard(self.policy.model, self.compute_dtype if bf16_params else None, root=self.policy.root,
                              layers_run_twice=self.layout == "shared")
            if self.reference is not None:
                distributed.shard(self.reference.model, None, root=self.reference.root)
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        if bf16_params and not self.world.sharded:
            self.masters = MasterWeights(params)  # from the float32 weights just loaded
            self.policy.model.to(self.compute_dtype)
            params = self.masters.masters
        self._mixed_precision_shards = bf16_params and self.world.sharded
        # fused: one kernel over all parameters (on CPU 0.12 s a step for SmolLM2-135M, against 0.9 s for the
        # default per-parameter loop and 0.64 s for foreach)
        self.optimizer = torch.optim.AdamW(params, lr=trainer_cfg.lr, weight_decay=trainer_cfg.weight_decay, fused=True)
        self.scheduler = lr_scheduler(self.optimizer, trainer_cfg)
        e = algo_cfg.entropy
        self.entropy_control = EntropyController(mode=e.mode, coef=e.coef, target=e.target, target_end=e.target_end,
                                                 delta=e.delta, total_steps=trainer_cfg.max_steps, coef_max=e.coef_max)
        self._last_entropy: float | None = None
        self.nonfinite_streak = 0  # optimizer steps skipped in a row for a non-finite loss or gradient
        self._cov_generator = torch.Generator().manual_seed(trainer_cfg.seed)
        _allocate_optimizer_state(self.optimizer)
        if resume_from is not None:
            self._load_training_state(Path(resume_from))

    # ---- training -------------------------------------------------------------------------------------------

    def train(self, batch: TrainBatch, step: int = 1) -> dict[str, float]:
        """`updates_per_batch` passes over the batch, `mini_batches` optimizer steps each; returns the metrics
        averaged over the optimizer steps, the pre-update mismatch statistics and the entropy controller's state.
        `step` is the driver's step (the entropy target's schedule)."""
        self.policy.model.train()
        cfg, algo = self.trainer_cfg, self.algo_cfg
        e = self.entropy_control
        self._entropy_coef = e.coef_for_loss(self._last_entropy, step)
        info: dict[str, float] = {"entropy_coef": self._entropy_coef}
        if e.mode in ("adaptive", "proportional") or algo.entropy.target_end is not None:
            info["entropy_target"] = e.target_at(step)
        # π_old as the trainer sees it, before any update: needed to correct the sampler mismatch, and to measure
        # it when later mini-batches would otherwise see already-updated weights.
        if algo.mismatch != "none" or cfg.mini_batches > 1:
            batch, pre = self._with_trainer_old_logprobs(batch)
            info.update(pre)
        groups = _mini_batches(len(batch), cfg.mini_batches, batch.group_size)
        totals: dict[str, float] = {}
        num_steps = cfg.updates_per_batch * len(groups)
        for epoch in range(cfg.updates_per_batch):
            for idx in groups:
                metrics = self._optimizer_step(batch.select(idx) if len(groups) > 1 else batch)
                first_pass_mismatch = metrics.pop("mismatch_kl")
                if epoch == 0 and "mismatch_kl" not in info:  # one mini-batch: its first pass is pre-update
                    info["mismatch_kl"] = first_pass_mismatch
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value / num_steps
        # entropy (a token-mean over each step) → the controller, for the next step's coefficient
        if math.isfinite(totals["entropy"]):
            self._last_entropy = totals["entropy"]
            e.update(self._last_entropy, step)
        totals.update(info)
        totals["nonfinite_streak"] = self.nonfinite_streak
        return totals

    def _optimizer_step(self, batch: TrainBatch) -> dict[str, float]:
        norms = LossNorms(num_tokens=max(batch.num_completion_tokens, 1), num_sequences=len(batch),
                          max_len=self.max_completion_tokens)
        metrics = self.accumulate_gradients(batch, norms)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.trainer_cfg.max_grad_norm)
        metrics["grad_norm"] = (grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm).item()
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]  # the rate this step applies (the schedule's)
        # the same decision on every rank: the norm and the metrics are reduced over all of them
        if not all(math.isfinite(v) for v in metrics.values()):
            self.optimizer.zero_grad(set_to_none=True)  # no update: weights, moments and schedule stay as they were
            self.nonfinite_streak += 1
            metrics["skipped_update_frac"] = 1.0
            return metrics
        self.nonfinite_streak = 0
        metrics["skipped_update_frac"] = 0.0
        self.optimizer.step()
        if self.masters is not None:
            self.masters.sync_params()
        self.scheduler.step()
        return metrics

    def accumulate_gradients(self, batch: TrainBatch, norms: LossNorms) -> dict[str, float]:
        """Zero the gradients, then forward + backward of the whole mini-batch `batch` (this rank's share of it when
        sharded), the loss normalised by `norms` (the mini-batch's global counts); returns the metrics summed over
        micro-batches and ranks. Afterwards the gradients are those of the mini-batch's loss (summed over ranks:
        each rank holds its shard of them)."""
        from rl.distributed import all_reduce_sum

        metrics: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        # With `precision: autocast`, one autocast region for the whole step: its cache of bf16 weight copies then
        # serves every micro-batch (the weights do not change until the optimizer step) instead of re-casting all
        # of them per micro-batch. The objective's float32 maths runs with autocast off.
        with self._autocast():
            for idx, mb in self._micro_batches(batch):
                self._accumulate(mb, norms, metrics, weight=1.0 if idx else 0.0)
        if self.world.sharded:
            from rl.distributed import release

            release(self.policy.root)
        return all_reduce_sum(metrics, self.world)

    def _accumulate(self, mb: MicroBatch, norms: LossNorms, metrics: dict[str, float], weight: float = 1.0) -> None:
        """Forward, objective and backward of one micro-batch; its metric contributions are added to `metrics`.
        `weight` 0: a padding pass of a rank with fewer micro-batches than the others (no loss, no metrics)."""
        if self.needs_logits:
            logits = self.policy.completion_logits(mb.inputs)
            logprobs, entropy = token_logprobs_and_entropy(logits, mb.targets, temperature=self.temperature)
        else:  # the output layer and the vocabulary pass on loss-carrying tokens only (~20 % of GRPO's are padding)
            logits = None
            logprobs, entropy = self._at_loss_tokens(self.policy, mb, token_logprobs_and_entropy)
        loss, micro_metrics = self.objective(mb, logits, logprobs, entropy, norms)
        (loss if weight == 1.0 else loss * weight).backward()
        sampler = mb.sampler_logprobs if mb.sampler_logprobs is not None else mb.old_logprobs
        micro_metrics["mismatch_kl"] = (
            mismatch_kl(logprobs.detach(), sampler, mb.loss_mask).item() * mb.loss_mask.sum().item()
            / norms.num_tokens)
        for key, value in micro_metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value * weight

    def _micro_batches(self, batch: TrainBatch):
        """(sequence indices, collated micro-batch) pairs in `self.layout`, lazily. Sharded: this rank's share of
        the prompt groups (`rl.distributed.split_groups`), followed by padding passes `([], <one sequence>)` until
        it has run as many micro-batches as the rank with the most (their collectives pair up)."""
        from rl.distributed import all_reduce_max, split_groups

        cfg = self.trainer_cfg
        mine = split_groups(len(batch), batch.group_size, self.world) if self.world.sharded else range(len(batch))
        mine = list(mine)
        plan = plan_micro_batches([batch.seq_len(i) for i in mine], micro_batch_size=cfg.micro_batch_size,
                                  token_budget=cfg.token_budget, keep_order=self.layout == "shared")
        plan = [[mine[k] for k in idx] for idx in plan]
        # agreed before the first pass: a collective between two FSDP passes would pair with another rank's gather
        plan += [[]] * (all_reduce_max(len(plan), self.world) - len(plan))
        for idx in plan:
            yield idx, collate(batch, idx or [0], layout=self.layout, device=self.device)

    def objective(self, mb: MicroBatch, logits: torch.Tensor, logprobs: torch.Tensor,
                  entropy: torch.Tensor, norms: LossNorms) -> tuple[torch.Tensor, dict[str, float]]:
        """The RL loss of one micro-batch, as its exact share of the optimizer step's loss.

        mb: a collated micro-batch (`rl.batching.MicroBatch`); logits [N, T, V] at the completion positions as the
        model returns them (compute dtype, not divided by the temperature: `self._scaled` gives float32 at the
        temperature) when `needs_logits`, else None; logprobs [N, T] of the targets and entropy [N, T] over the
        vocabulary, both at the sampling temperature and differentiable (0 where `loss_mask` is 0 unless
        `needs_logits`). Returns (loss, metrics), the metrics being contributions that sum over
        the micro-batches of the step.
        """
        algo, ent = self.algo_cfg, self.algo_cfg.entropy
        mask, adv, old = mb.loss_mask, mb.advantages, mb.old_logprobs
        policy_logprobs = logprobs
        loss_cfg = algo.loss
        token_loss_fn = TOKEN_LOSSES[loss_cfg.type]
        # KL-Cov (as the paper and verl): the policy-gradient term is the unclipped -A·ratio; its penalty does the
        # clipping's job on the tokens that drive the entropy down (docs/ALGORITHMS.md#covariance-based-entropy-control)
        eps_low, eps_high, dual_clip = ((1.0, float("inf"), None) if ent.cov == "kl_cov"
                                        else (loss_cfg.eps_low, loss_cfg.eps_high, loss_cfg.dual_clip))
        if ent.cov == "clip_cov":  # candidates exclude the tokens PPO clips anyway (as verl)
            _, pre = token_loss_fn(logprobs.detach(), old, adv, mask, eps_low=eps_low, eps_high=eps_high,
                                   dual_clip=dual_clip)
            detach = clip_cov_mask(logprobs.detach(), adv, mask, clip_ratio=ent.cov_frac, cov_low=ent.cov_low,
                                   cov_high=ent.cov_high, generator=self._cov_generator, exclude=pre["clipped"])
            policy_logprobs = torch.where(detach, logprobs.detach(), logprobs)
        token_loss, stats = token_loss_fn(policy_logprobs, old, adv, mask, eps_low=eps_low, eps_high=eps_high,
                                          dual_clip=dual_clip)
        if mb.is_weights is not None:  # TIS / MIS weights from the pre-update pass (detached)
            token_loss = token_loss * mb.is_weights
        if ent.cov == "kl_cov":
            token_loss = token_loss + kl_cov_penalty(logprobs, old, adv, mask, top_frac=ent.cov_frac,
                                                     coef=ent.kl_cov_coef)
        loss = aggregate(token_loss, mask, loss_cfg.aggregation, num_tokens=norms.num_tokens,
                         num_sequences=norms.num_sequences, max_len=norms.max_len)

        def token_mean(x: torch.Tensor) -> float:
            return ((x * mask).sum() / norms.num_tokens).item()

        metrics = {"policy_loss": loss.item(), "clip_frac": token_mean(stats["clipped"]),
                   "ratio_mean": token_mean(stats["ratio"])}
        if loss_cfg.dual_clip is not None:
            metrics["dual_clip_frac"] = token_mean(stats["dual_clipped"])
        if ent.cov == "clip_cov":
            metrics["clip_cov_frac"] = token_mean(detach.float())
        if self._entropy_coef > 0:
            loss = loss - self._entropy_coef * (entropy * mask).sum() / norms.num_tokens
        metrics["entropy"] = token_mean(entropy.detach())
        if self.reference is not None:
            ref_logprobs = self._reference_logprobs(mb)
            kl = (kl_per_token(logprobs, ref_logprobs, algo.kl_estimator) * mask).sum() / norms.num_tokens
            if algo.kl_mode == "loss":
                loss = loss + algo.kl_beta * kl
            metrics["kl_ref"] = kl.item()
        return loss, metrics

    # ---- extra passes ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def _with_trainer_old_logprobs(self, batch: TrainBatch) -> tuple[TrainBatch, dict[str, float]]:
        """Recompute log π_old with the learner's weights before the update. With a mismatch correction, π_old
        becomes the trainer's (the sampler's move to `sampler_logprobs`) and the per-token correction weights join
        the batch as `is_weights`; the sampler/trainer mismatch is measured either way."""
        from dataclasses import replace

        trainer_old = self.logprobs(batch)
        masks = [batch.mask(i) for i in range(len(batch))]
        t, s, m = pad_rows(trainer_old, torch.float32), pad_rows(batch.old_logprobs, torch.float32), pad_rows(masks, torch.float32)
        info = {"mismatch_kl": mismatch_kl(t, s, m).item()}
        algo = self.algo_cfg
        if algo.mismatch == "none":
            return batch, info
        w = mismatch_weights(t, s, m, algo.mismatch, algo.mismatch_c)
        info["mismatch_kept_frac"] = (((w > 0).float() * m).sum() / m.sum().clamp(min=1)).item()
        info["mismatch_weight_mean"] = ((w * m).sum() / m.sum().clamp(min=1)).item()
        weights = [w[i, : len(c)].tolist() for i, c in enumerate(batch.completion_ids)]
        return replace(batch, old_logprobs=trainer_old, sampler_logprobs=batch.old_logprobs, is_weights=weights), info

    @torch.no_grad()
    def logprobs(self, batch: TrainBatch) -> list[list[float]]:
        """log π_θ (at the sampling temperature) of every completion token, without gradients."""
        self.policy.model.eval()
        out: list[list[float] | None] = [None] * len(batch)
        for idx, mb in self._micro_batches(batch):
            with self._autocast():
                logits = self.policy.completion_logits(mb.inputs)
            lp = token_logprobs(logits, mb.targets, temperature=self.temperature).cpu()
            for k, i in enumerate(idx):
                out[i] = lp[k, : len(batch.completion_ids[i])].tolist()
        self.policy.model.train()
        return merge_from_ranks(out, self.world)

    @torch.no_grad()
    def reference_kl(self, batch: TrainBatch) -> list[float]:
        """Σ_t (log π_old − log π_ref) per completion (k1 summed over its loss-carrying tokens): the PPO-RLHF
        reward penalty of `algorithm.kl_mode: reward`."""
        out: list[float | None] = [None] * len(batch)
        for idx, mb in self._micro_batches(batch):
            ref = self._reference_logprobs(mb)
            per_seq = ((mb.old_logprobs - ref) * mb.loss_mask).sum(dim=1).cpu()
            for k, i in enumerate(idx):
                out[i] = per_seq[k].item()
        return merge_from_ranks(out, self.world)

    def _reference_logprobs(self, mb: MicroBatch) -> torch.Tensor:
        """log π_ref [N, T] at the loss-carrying tokens (0 elsewhere)."""
        with torch.no_grad(), self._autocast():
            return self._at_loss_tokens(self.reference, mb, token_logprobs)

    def _at_loss_tokens(self, policy, mb: MicroBatch, stats):
        """`stats` (`token_logprobs` or `token_logprobs_and_entropy`) of `policy` at the positions where `loss_mask`
        is 1 only (the output layer never sees the others), each result scattered back to [N, T] with 0 elsewhere."""
        keep = mb.loss_mask > 0
        out = stats(policy.completion_logits(mb.inputs, where=keep), mb.targets[keep], temperature=self.temperature)
        return tuple(_scatter(keep, t) for t in out) if isinstance(out, tuple) else _scatter(keep, out)

    def _scaled(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 logits at the sampling temperature (no division at 1: a pass over [N, T, V] and its backward),
        for objectives that need the whole distribution (distillation)."""
        logits = logits.float()
        return logits if self.temperature == 1.0 else logits / self.temperature

    def _autocast(self):
        if self.compute_dtype == torch.float32 or self.masters is not None or self._mixed_precision_shards:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)


    # ---- weights and checkpoints ----------------------------------------------------------------------------

    def weights(self) -> list[tuple[str, torch.Tensor]] | None:
        """HF-named weights for the rollout engines (LoRA merged), in the compute dtype, on CPU. With bf16
        parameters on CPU these share storage with the live parameters: ship (an actor's return value is
        serialised at once) or copy them before the next optimizer step. Sharded: every rank takes part in
        gathering each unit; rank 0 returns copies, the others None."""
        if not self.world.sharded:
            return [(name, t.detach().to("cpu", self.compute_dtype)) for name, t in self.policy.merged_weights()]
        out = [(name, t.detach().to("cpu", self.compute_dtype, copy=True)) for name, t in self.policy.merged_weights()
               if self.world.rank == 0]
        return out if self.world.rank == 0 else None

    def full_weights(self):
        """(HF name, tensor) in the compute dtype on the learner's device, one at a time (for a weight transfer
        that streams them); sharded, every rank must iterate to the end together."""
        with torch.no_grad():
            for name, tensor in self.policy.merged_weights():
                yield name, tensor.detach().to(self.compute_dtype)

    def weight_shapes(self) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        """(name, dtype, shape) of what `full_weights` yields, in order, gathering nothing."""
        return [(name, self.compute_dtype, shape) for name, shape in self.policy.weight_shapes()]

    @torch.no_grad()
    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        """log π_θ of each completion token at temperature 1 (as the engines' `score`)."""
        self.policy.model.eval()
        batch = TrainBatch([prompt], [completion], [[0.0] * len(completion)], [0.0])
        mb = collate(batch, [0], layout="padded", device=self.device)
        with self._autocast():
            logits = self.policy.completion_logits(mb.inputs)
        return token_logprobs(logits, mb.targets)[0].tolist()

    def save(self, directory: str) -> None:
        """Into `directory` (every rank calls it when sharded): the HF-format model in float32 (+ adapter for LoRA),
        consolidated by rank 0; AdamW's moments by parameter name with torch.distributed.checkpoint under
        `optimizer/` (each rank writes its shards; any number of learners can load them); scheduler, entropy
        controller and RNG state in `training_state.pt`."""
        import torch.distributed.checkpoint as dcp

        if not self._weights_finite():
            raise RuntimeError("refusing to checkpoint non-finite weights (a skipped update should have prevented "
                               "them)")
        path = Path(directory)
        if self.world.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            full = get_model_state_dict(self.policy.model,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if self.world.rank == 0:
                self.policy.save_pretrained(path, state_dict=full)
        else:
            with self.masters.float32_params() if self.masters is not None else contextlib.nullcontext():
                self.policy.save_pretrained(path)
        with _single_process_dcp(self.world):
            dcp.save({"optimizer": self._named_optimizer_state()}, checkpoint_id=str(path / OPTIMIZER_DIR),
                     no_dist=not self.world.sharded)
        if self.world.rank == 0:
            torch.save(
                {"param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups],
                 "scheduler": self.scheduler.state_dict(),
                 "entropy_control": self.entropy_control.state_dict(), "last_entropy": self._last_entropy,
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
                path / "training_state.pt",
            )

    @torch.no_grad()
    def _weights_finite(self) -> bool:
        """Every trainable weight (this rank's shards, then agreed over the ranks) is finite."""
        from rl.distributed import all_reduce_max

        params = self.masters.masters if self.masters is not None else [
            p for p in self.policy.model.parameters() if p.requires_grad]
        bad = any(not torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all() for p in params)
        return all_reduce_max(int(bad), self.world) == 0

    def _named_optimizer_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """AdamW's state tensors keyed by the parameter's name in the model (the same with or without sharding,
        with or without float32 masters): the live tensors, so loading into this dict loads the optimizer."""
        trainable = [(n, p) for n, p in self.policy.model.named_parameters() if p.requires_grad]
        optimized = self.masters.masters if self.masters is not None else [p for _, p in trainable]
        return {name: self.optimizer.state[p] for (name, _), p in zip(trainable, optimized, strict=True)}

    def _load_training_state(self, path: Path) -> None:
        import torch.distributed.checkpoint as dcp

        state = torch.load(path / "training_state.pt", weights_only=False, map_location="cpu")  # RNG states must stay on CPU
        if "optimizer" in state:  # a checkpoint written before the optimizer moved to DCP
            self.optimizer.load_state_dict(state["optimizer"])
        else:
            with _single_process_dcp(self.world):
                dcp.load({"optimizer": self._named_optimizer_state()}, checkpoint_id=str(path / OPTIMIZER_DIR),
                         no_dist=not self.world.sharded)
            for group, saved in zip(self.optimizer.param_groups, state["param_groups"], strict=True):
                group.update(saved)
        restore_lr_scheduler(self.scheduler, state["scheduler"], self.trainer_cfg.lr)
        if "entropy_control" in state:
            self.entropy_control.load_state_dict(state["entropy_control"])
            self._last_entropy = state["last_entropy"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])


@contextlib.contextmanager
def _single_process_dcp(world: World):
    """torch.distributed.checkpoint in one process warns that it assumes one process: that is the intent."""
    import warnings

    with warnings.catch_warnings():
        if not world.sharded:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


OPTIMIZER_DIR = "optimizer"
"""A checkpoint's subdirectory holding AdamW's state (torch.distributed.checkpoint, keyed by parameter name)."""


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """transformers' schedule `cfg.lr_schedule` over the run's optimizer steps, after `cfg.warmup_steps` of linear
    warm-up (`constant` with a warm-up is transformers' `constant_with_warmup`)."""
    name = "constant_with_warmup" if cfg.lr_schedule == "constant" and cfg.warmup_steps else cfg.lr_schedule
    return get_scheduler(name, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.optimizer_steps,
                         scheduler_specific_kwargs=dict(cfg.lr_schedule_kwargs))


def restore_lr_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict, lr: float) -> None:
    """Put a resumed run's schedule at the checkpoint's optimizer step, with this run's `lr` and schedule (which
    may be longer than the saved run's: a resume with a larger `max_steps`), and set the next step's rate."""
    scheduler.load_state_dict(state)
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    for group, factor in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)


@torch.no_grad()
def _allocate_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create AdamW's moments (and touch a gradient's worth of memory) now, with an update of learning rate 0 on
    zero gradients, then reset its step count: nothing changes (p − 0·update, p·(1 − 0·wd)). Lazily created in
    the first step, the ~1 GiB of moments of a 135M model took the memory the first step's activations had
    freed, so the second step page-faulted ~1.2 GB afresh (measured on 2 CPU cores: 5.5 s against 3.2 s for the
    steps after it); allocated before any activation, every later step reuses the first one's memory."""
    lrs = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    for state in optimizer.state.values():
        state["step"].zero_()
    optimizer.zero_grad(set_to_none=True)


def _scatter(where: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values [M] (M = where.sum(), row-major) into zeros shaped like `where` [N, T]; differentiable."""
    return values.new_zeros(where.shape).masked_scatter(where, values)


def micro_batch_layout(trainer_cfg: TrainerConfig, model_cfg: ModelConfig) -> str:
    """`packed` with a token budget; else `shared` (prompt computed once per micro-batch) unless turned off or
    gradient checkpointing is on (checkpointed layers do not return the prompt's keys/values); else `padded`."""
    if trainer_cfg.token_budget is not None:
        return "packed"
    return "shared" if trainer_cfg.share_prompts and not model_cfg.gradient_checkpointing else "padded"


def _mini_batches(n: int, parts: int, group_size: int) -> list[list[int]]:
    """`parts` contiguous slices of range(n), each made of whole groups of `group_size` sequences."""
    groups = -(-n // group_size)
    per = -(-groups // parts)
    return [list(range(g * group_size, min((g + per) * group_size, n))) for g in range(0, groups, per)]
