"""The Ray side: thin actor wrappers around the plain `Learner` and rollout engines, and a `RolloutGroup`
that shards prompts across rollout workers.

Weight sync (`rl.weight_sync`) reaches the workers through `load_weights` (Ray's object store) or through vLLM's
weight-transfer API (`init_weight_transfer` / `receive_weights`, driven by the learner actor, whose class gets
the trainer side mixed in: `rl.weight_sync.WeightSender`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from rl.logs import ECHO_ENV, LOG_DIR_ENV, capture_output
from rl.rollout import Completion, SamplingSpec, make_engine
from rl.threads import set_torch_threads

log = logging.getLogger(__name__)


class RolloutWorker:
    """Holds one rollout engine inside a Ray actor."""

    def __init__(self, backend: str, engine_kwargs: dict[str, Any]):
        set_torch_threads(None)  # every usable core (Ray would leave the engine on one)
        self.engine = make_engine(backend, **engine_kwargs)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        return self.engine.generate(prompts, spec)

    def generate_with_state(self, prompts: list[list[int]], spec: SamplingSpec
                            ) -> tuple[list[list[Completion]], list[dict[str, Any]]]:
        """`generate`, and the engine's sampler state right after it, in one call."""
        return self.engine.generate(prompts, spec), self.engine.sampler_state()

    def load_weights(self, weights: list) -> None:
        self.engine.load_weights(weights)

    def init_weight_transfer(self, init_info: dict) -> None:
        self.engine.init_weight_transfer(init_info)

    def receive_weights(self, update_info: dict) -> None:
        self.engine.receive_weights(update_info)

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        return self.engine.score(prompt, completion)

    def sampler_state(self) -> list[dict[str, Any]]:
        return self.engine.sampler_state()

    def set_sampler_state(self, state: list[dict[str, Any]]) -> bool:
        return self.engine.set_sampler_state(state)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()


ACTOR_ENV = {"TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
             # vLLM's own handler prints its log lines to stdout, which is the actor's log file (`rl.logs`); the
             # driver turns that handler off for itself, and actors would inherit that through Ray
             "VLLM_CONFIGURE_LOGGING": "1"}
"""Environment of every actor (learner, rollout workers, teacher)."""

ACTOR_ENV_DEFAULTS = {
    # vLLM-CPU keeps one core for a scheduler process that runs separately; ours runs in the engine's process
    # (above), so that core would idle while the engine generates on the rest (half the machine on 2 cores).
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    # glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh
    # mmap and unmaps it on free, so each micro-batch page-faults its activations and its [vocab, hidden]
    # embedding gradients in again. Keeping freed memory in the heap made TRL's GRPO step ~1.6x faster on the
    # 2-core CI machine and ours faster too (benchmarks/RESULTS.md, vs TRL); the cost is that a process's RSS
    # stays at its peak.
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**40),
}
"""Tunables added to every actor's environment unless the driver's environment sets them."""


def init_ray(address: str | None, log_dir: str | os.PathLike | None = None, verbose: bool = True) -> None:
    """Connect to `address`, or start a local Ray sized to this machine (no dashboard). With `log_dir` (the
    run's `output_dir/logs`, `rl.logs`), actors write their output there and Ray forwards it to the console only
    when `verbose`."""
    if ray.is_initialized():
        return
    env = {**{key: os.environ.get(key, value) for key, value in ACTOR_ENV_DEFAULTS.items()}, **ACTOR_ENV}
    if log_dir is not None:
        env.update({LOG_DIR_ENV: str(Path(log_dir).resolve()), ECHO_ENV: "1" if verbose else "0"})
    common = {"log_to_driver": verbose, "runtime_env": {"env_vars": env}}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False, **common)


def logged(cls: type, log_name: str) -> type:
    """`cls` (same name, for Ray's `ray::<name>` process titles) whose constructor first sends the actor process's
    output to `output_dir/logs/<log_name>.log` (`rl.logs.capture_output`; on a cluster, that path on the actor's
    node)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        capture_output(log_name)
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__qualname__": cls.__qualname__,
                                       "__module__": cls.__module__})


def gpu_share(workers: int, extra_gpu_tenants: int = 0) -> float:
    """Each actor's share of a single GPU that the learner, `workers` rollout engines and `extra_gpu_tenants` other
    actors (a distillation teacher) use together; 0 without CUDA."""
    import torch

    return 1.0 / (workers + 1 + extra_gpu_tenants) if torch.cuda.is_available() else 0.0


class ActorFailure(RuntimeError):
    """A learner rank died, or a rollout worker failed more often than `rollout.max_restarts` allows: the run
    cannot go on (its last checkpoint is the recovery)."""


class Pending:
    """A call running on every learner rank: `result()` waits for all of them (the first failure raises at once:
    the other ranks may be blocked in a collective with the failed one) and returns rank 0's value."""

    def __init__(self, refs: list):
        self.refs = refs

    def result(self) -> Any:
        waiting = list(self.refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            try:
                ray.get(done)
            except ray.exceptions.RayActorError as e:
                rank = self.refs.index(done[0])
                raise ActorFailure(f"learner rank {rank} died ({type(e).__name__})") from None
        return ray.get(self.refs[0])


class LearnerGroup:
    """The learner's `trainer.learners` ranks as Ray actors, one torch.distributed group (`rl.distributed`). Every
    method runs on every rank with the same arguments (each rank takes its share of a batch; collectives need all
    of them); rank 0's result is the group's."""

    def __init__(self, cls: type, args: tuple, kwargs: dict[str, Any], *, learners: int, placement: Any = None,
                 num_gpus: float = 0.0):
        from rl.distributed import ProcessGroupSpec

        options = [placement.learner(rank) if placement is not None else {"num_cpus": 0, "num_gpus": num_gpus}
                   for rank in range(learners)]
        address, port = ray.get(_free_address.options(**options[0]).remote())  # on rank 0's node
        self.actors = [ray.remote(logged(cls, f"learner_{rank}")).options(**options[rank]).remote(
            *args, **kwargs, process_group=ProcessGroupSpec(address, port, rank, learners)) for rank in range(learners)]

    def submit(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        if len(self.actors) > 1:  # one copy in the object store for all ranks (top-level refs arrive resolved)
            args = tuple(a if isinstance(a, ray.ObjectRef) else ray.put(a) for a in args)
        return Pending([getattr(a, method).remote(*args, **kwargs) for a in self.actors])

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.submit(method, *args, **kwargs).result()


@ray.remote(num_cpus=0)
def _free_address() -> tuple[str, int]:
    """This node's address and a free port: where learner rank 0 opens the process group. The port is drawn
    between Ray's worker ports (below 20000) and the kernel's ephemeral range: a port from `bind(0)` is
    ephemeral, and in the moment between this check and rank 0's bind the kernel can hand it to any outgoing
    connection (EADDRINUSE at rendezvous, seen in CI)."""
    import random
    import socket

    try:
        ephemeral_low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    candidates = random.sample(range(20000, ephemeral_low), min(64, max(ephemeral_low - 20000, 0)))
    for port in candidates + [0]:
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return ray.util.get_node_ip_address(), s.getsockname()[1]
    raise RuntimeError("no free TCP port for the learners' process group")


def start_learner(*args: Any, learners: int = 1, placement: Any = None, num_workers: int = 1,
                  learner_cls: type | None = None, **kwargs: Any) -> LearnerGroup:
    """The learner's ranks (`LearnerGroup`): `learner_cls` (default `rl.learner.Learner`; a subclass overrides its
    `objective`), with the sending side of vLLM's weight transfer mixed in (it must run in the processes that hold
    the weights), placed by `placement` (`rl.placement.plan`); without one, on this node beside `num_workers`
    rollout workers sharing a single GPU."""
    from rl.learner import Learner
    from rl.weight_sync import WeightSender

    cls = learner_cls or Learner
    sending = type(cls.__name__, (cls, WeightSender), {})
    # num_cpus=0: the learner and the engines take turns on the same cores (synchronous GRPO).
    return LearnerGroup(sending, args, kwargs, learners=learners, placement=placement,
                        num_gpus=gpu_share(num_workers))


class RolloutGroup:
    """`workers` rollout actors; prompts are sharded across them in contiguous blocks. Placed by `placement`
    (`rl.placement.plan`); without one, on a single GPU they share it with the learner and `extra_gpu_tenants`
    other actors (a distillation teacher)."""

    def __init__(self, workers: int, backend: str, engine_kwargs: dict[str, Any], extra_gpu_tenants: int = 0,
                 placement: Any = None, *, timeout_s: float | None = None, max_restarts: int = 0,
                 on_restart: Callable[[int], None] | None = None):
        """`timeout_s`: a worker that has not returned its shard of a `generate` call by then is taken for hung;
        it is killed and re-created, like a worker that died, at most `max_restarts` times per run, and
        `on_restart(i)` (the driver's: give worker i the current weights) runs before its shard is sampled again."""
        self.backend, self.engine_kwargs = backend, engine_kwargs
        self.timeout_s, self.max_restarts, self.on_restart, self.restarts = timeout_s, max_restarts, on_restart, 0
        if placement is None:
            # NCCL cannot run two ranks on one GPU: engines that receive over it get GPUs of their own
            nccl = engine_kwargs.get("weight_transfer") == "nccl"
            gpus = 1.0 if nccl else gpu_share(workers, extra_gpu_tenants)
            options = [{"num_cpus": 0, "num_gpus": gpus}] * workers
        else:
            options = [placement.worker(i) for i in range(workers)]
        self.options = options
        self.workers = [self._start(i) for i in range(workers)]
        # each worker's sampler state as of its last generate (`sampler_states`; None: not read yet)
        self._states: list[list[dict[str, Any]] | None] | None = None

    def _start(self, i: int) -> Any:
        kwargs = {**self.engine_kwargs, "seed": self.engine_kwargs.get("seed", 0) + i}
        worker = ray.remote(logged(RolloutWorker, f"rollout_worker_{i}"))  # the engine's logs: output_dir/logs/
        return worker.options(**self.options[i]).remote(self.backend, kwargs)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        """Each worker samples its contiguous shard; a worker that dies, or is still busy after `timeout_s`, is
        restarted (`restart`) and its shard sampled again, from the sampler state the lost one started it from: the
        same tokens as if nothing had happened."""
        shards = _split(prompts, len(self.workers))
        if self._states is None:  # a replacement of a worker lost in the first generate draws as it would have
            self._states = self._read_states()
        results: dict[int, tuple[list, list]] = {}  # worker → (its groups, its sampler state after them)
        running = {self.workers[i].generate_with_state.remote(shard, spec): i
                   for i, shard in enumerate(shards) if shard}
        while running:
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=self.timeout_s)
            failed = []
            for ref in done:
                i = running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    failed.append((i, f"died ({type(e).__name__})"))
            failed += [(i, f"returned nothing within rollout.timeout_s={self.timeout_s:g} s") for i in running.values()]
            running = {}
            for i, why in failed:
                self.restart(i, why)
                running[self.workers[i].generate_with_state.remote(shards[i], spec)] = i
        for i, (_, state) in results.items():  # workers without a shard drew nothing: theirs stays
            self._states[i] = state
        return [group for i in sorted(results) for group in results[i][0]]

    def restart(self, i: int, why: str) -> None:
        """Replace worker i (killed if still there) with a fresh one, then `on_restart(i)`, and set its sampler
        state to the lost one's as of its last `generate`; an `ActorFailure` once `max_restarts` restarts have been
        used."""
        if self.restarts >= self.max_restarts:
            raise ActorFailure(f"rollout worker {i} {why}, and rollout.max_restarts={self.max_restarts} restarts "
                               "are used up")
        self.restarts += 1
        log.warning("rollout worker %d %s: restarting it (restart %d of %d)", i, why, self.restarts,
                    self.max_restarts)
        ray.kill(self.workers[i], no_restart=True)
        self.workers[i] = self._start(i)
        ray.get(self.workers[i].__ray_ready__.remote())
        if self.on_restart is not None:
            self.on_restart(i)
        if self._states and self._states[i] is not None:  # draw on where the lost engine had got to
            ray.get(self.workers[i].set_sampler_state.remote(self._states[i]))

    def score(self, prompt: list[int], completion: list[int]) -> list[float]:
        return ray.get(self.workers[0].score.remote(prompt, completion))

    def sampler_states(self) -> list[list[dict[str, Any]] | None]:
        """Every worker's `RolloutEngine.sampler_state()` (JSON-able) as of its last `generate` (returned with its
        samples, so that a replacement of the worker draws on from there, and for checkpoints); None for a worker
        that did not answer before its first one."""
        if self._states is None:
            self._states = self._read_states()
        return list(self._states)

    def set_sampler_states(self, states: list[list[dict[str, Any]] | None]) -> bool:
        """Put back `sampler_states()`; False when they are of another number of workers (nothing is set) or some
        engine could not take its own (none recorded, another number of sampling processes or GPUs): those
        engines keep the streams they have, the others draw on where the recorded run's were."""
        if len(states) != len(self.workers):
            return False
        refs = {i: w.set_sampler_state.remote(s) for i, (w, s) in enumerate(zip(self.workers, states)) if s}
        done = ray.get(list(refs.values()))
        self._states = self._read_states()
        return len(done) == len(states) and all(done)

    def _read_states(self) -> list[list[dict[str, Any]] | None]:
        refs = [w.sampler_state.remote() for w in self.workers]
        states: list[list[dict[str, Any]] | None] = []
        for ref in refs:
            try:
                states.append(ray.get(ref, timeout=self.timeout_s))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                states.append(None)
        return states

    def sleep(self) -> None:
        ray.get([w.sleep.remote() for w in self.workers])

    def wake_up(self) -> None:
        ray.get([w.wake_up.remote() for w in self.workers])


def _split(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
