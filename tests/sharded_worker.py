"""Run under torchrun by tests/test_sharded_learner.py: N learner ranks (gloo) train on the same batches as the
test's single learner and dump, from rank 0, the gathered gradients, parameters, optimizer moments and metrics
(`torch.save` to --out), plus each rank's count of the elements it holds.

    python -m torch.distributed.run --nproc_per_node=2 tests/sharded_worker.py MODEL_DIR OUT RESUME_DIR SAVE_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharded_cases import CASES, LORA, batch, make_learner  # noqa: E402

from rl.distributed import local_numel  # noqa: E402


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu().clone()


def dump(learner) -> dict:
    params = {n: full(p) for n, p in learner.policy.model.named_parameters()}
    grads = {n: full(p.grad) for n, p in learner.policy.model.named_parameters() if p.grad is not None}
    moments = {n: full(s["exp_avg"]) for n, s in learner._named_optimizer_state().items()}
    return {"params": params, "grads": grads, "exp_avg": moments}


def main() -> None:
    model_dir, out, resume_dir, save_dir = sys.argv[1:5]
    results = {}
    for name, case in CASES.items():
        learner = make_learner(model_dir, **case)
        metrics = learner.train(batch())
        results[name] = {"metrics": metrics, **dump(learner)}
        if name == "padded":
            params = [p for p in learner.policy.model.parameters()]
            state = [t for s in learner.optimizer.state.values() for k, t in s.items() if k != "step"]
            held = torch.tensor([local_numel(params), local_numel(state)], dtype=torch.int64)
            all_held = [torch.zeros_like(held) for _ in range(dist.get_world_size())]
            dist.all_gather(all_held, held)
            results["held"] = [h.tolist() for h in all_held]
            learner.save(save_dir)
        del learner
    lora = make_learner(model_dir, lora=LORA, **CASES["padded"])
    lora.train(batch())
    merged = lora.weights()  # rank 0: the adapter-merged weights the engines would get
    lora.save(str(Path(save_dir).with_name("lora_ckpt")))
    results["lora"] = {"merged": dict(merged) if merged else None,
                       "adapter": {n: full(p) for n, p in lora.policy.model.named_parameters() if "lora_" in n}}
    del lora
    resumed = make_learner(model_dir, resume_from=resume_dir, **CASES["padded"])
    results["resumed"] = {"before": dump(resumed), "metrics": resumed.train(batch(seed=1))}
    results["resumed"]["after"] = dump(resumed)
    if dist.get_rank() == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
