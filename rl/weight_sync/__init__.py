"""How the learner's new weights reach every rollout engine after an optimizer step (`rollout.weight_sync`).

The driver calls `push()` once per step whatever the backend (`SYNCS`); it returns once every engine serves the
new weights with its prefix cache dropped, so `time_sync_s` is the whole transfer.

- `object_store`: `Learner.weights()` (HF names, LoRA merged, compute dtype, on CPU) goes into Ray's object store
  once; every worker reads it from there (zero-copy on its node) into its engine's `load_weights`. Any engine.
- `ipc`, `nccl`, `gloo`: vLLM's weight-transfer API. The learner actor holds vLLM's trainer-side engine
  (`WeightTransferTrainerFactory.trainer_init`, mixed in by `WeightSender`) reading `LearnerWeights`; each rollout
  engine holds the receiving side (`LLM(weight_transfer_config=...)`) and the rollout workers are the trainer's
  control-plane client (`RolloutClient`). `ipc` hands CUDA IPC handles to engines on the learner's GPU (where
  `rl.actors` puts everything on one node); `nccl` broadcasts from the learner's GPU to engines on GPUs of
  their own (NCCL cannot run two ranks on one GPU); `gloo` is that broadcast over a CPU process group
  (`rl.weight_sync.gloo`), the same protocol where there is no GPU.
- `auto`: `object_store`, the path every CPU test and the demo run end to end. `ipc` / `nccl` are opt-in until
  their `gpu` test (tests/test_weight_sync.py) has passed on a GPU with vllm; `auto` should pick `ipc` there then.

Where each part lives:

- `base.py`: the `WeightSync` interface (`connect` once, `push` per step).
- `selection.py`: `rollout.weight_sync` → a backend (`SYNCS`, `make_weight_sync`) and the checks done before
  anything starts (`check_weight_sync`, `gpus_needed`).
- `object_store.py`: `ObjectStoreSync`.
- `vllm_transfer.py`: `VLLMTransferSync` and the learner's side of vLLM's weight transfer (`WeightSender`,
  `LearnerWeights`, `RolloutClient`, each backend's trainer-side init info).
- `gloo.py`: the `gloo` backend, both ends, registered with vLLM's factories on import (imports vLLM).
- `engine_loader.py`: what runs inside vLLM's worker to load weights (`WeightLoaderExtension`, part of the
  `worker_extension_cls` that `VLLMEngine` names: `rl.rollout.vllm_worker`; imports torch and vLLM).

Importing this package imports Ray but neither torch nor vLLM (the driver checks a config without them); those
two load inside the learner and engine processes, where they are needed.
"""

from rl.weight_sync.base import WeightSync
from rl.weight_sync.selection import (
    SYNCS,
    check_weight_sync,
    gpus_needed,
    make_weight_sync,
    resolve_weight_sync,
)
from rl.weight_sync.vllm_transfer import WeightSender

__all__ = ["SYNCS", "WeightSender", "WeightSync", "check_weight_sync", "gpus_needed", "make_weight_sync",
           "resolve_weight_sync"]
