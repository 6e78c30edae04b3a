"""The learner's learning-rate schedule: transformers' schedules by name over the run's optimizer steps, checked
when the config loads (unknown or missing arguments name the key) and resumed exactly from a checkpoint."""

from __future__ import annotations

import inspect
import math
import typing

import pytest
import torch
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType

from rl.config import LR_SCHEDULE_KWARGS, GRPOConfig, TrainerConfig
from rl.config_io import ConfigError, load_config
from rl.learner import lr_scheduler, restore_lr_scheduler


def _lrs(cfg: TrainerConfig, steps: int | None = None) -> list[float]:
    """The learning rate of each optimizer step of a run with this config."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = lr_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(cfg.optimizer_steps if steps is None else steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_the_table_of_arguments_is_transformers_own() -> None:
    names = typing.get_args(TrainerConfig.model_fields["lr_schedule"].annotation)
    assert set(names) == set(LR_SCHEDULE_KWARGS)
    for name, (allowed, required) in LR_SCHEDULE_KWARGS.items():
        params = inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(name)]).parameters
        assert set(allowed) <= set(params), name
        assert all(set(group) <= set(allowed) for group in required), name
    # the required argument of warmup_stable_decay has no default in transformers
    assert inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType.WARMUP_STABLE_DECAY]).parameters[
        "num_decay_steps"].default is inspect.Parameter.empty


def test_constant_is_the_default_and_warmup_ramps_from_zero() -> None:
    assert _lrs(TrainerConfig(max_steps=4, lr=1e-3)) == [1e-3] * 4
    lrs = _lrs(TrainerConfig(max_steps=6, lr=1e-3, warmup_steps=4))
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


def test_the_schedule_spans_every_optimizer_step() -> None:
    cfg = TrainerConfig(max_steps=5, updates_per_batch=2, mini_batches=2, lr=1.0, lr_schedule="linear")
    assert cfg.optimizer_steps == 20
    lrs = _lrs(cfg)
    assert lrs[0] == 1.0 and lrs[10] == pytest.approx(0.5) and lrs[-1] == pytest.approx(1 / 20)


def test_warmup_stable_decay_holds_then_decays_to_its_floor() -> None:
    cfg = TrainerConfig(max_steps=12, lr=1.0, lr_schedule="warmup_stable_decay",
                        lr_schedule_kwargs={"num_decay_steps": 6, "min_lr_ratio": 0.1})
    lrs = _lrs(cfg, steps=13)
    assert lrs[:6] == [1.0] * 6  # the first half is the constant schedule's, step for step
    assert all(a > b for a, b in zip(lrs[6:12], lrs[7:13], strict=True))  # then strictly down
    assert lrs[12] == pytest.approx(0.1)  # to the floor at the end
    half = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 6))  # cosine, halfway through the decay
    assert lrs[9] == pytest.approx(half)


def test_cosine_with_min_lr_ends_at_its_floor() -> None:
    cfg = TrainerConfig(max_steps=10, lr=2.0, lr_schedule="cosine_with_min_lr",
                        lr_schedule_kwargs={"min_lr_rate": 0.25})
    lrs = _lrs(cfg, steps=11)
    assert lrs[0] == 2.0 and lrs[10] == pytest.approx(0.5) and min(lrs) == pytest.approx(0.5)


def _resumed_lrs(saved: TrainerConfig, at: int, resumed: TrainerConfig) -> list[float]:
    """The learning rates of `resumed`'s optimizer steps after `at`, resumed from a run of `saved` at step `at`."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=saved.lr)
    first = lr_scheduler(optimizer, saved)
    for _ in range(at):
        optimizer.step()
        first.step()
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=resumed.lr)
    scheduler = lr_scheduler(optimizer, resumed)
    restore_lr_scheduler(scheduler, first.state_dict(), resumed.lr)
    lrs = []
    for _ in range(resumed.optimizer_steps - at):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_a_resumed_schedule_continues_where_it_stopped() -> None:
    cfg = TrainerConfig(max_steps=10, lr=1.0, warmup_steps=2, lr_schedule="cosine")
    assert _resumed_lrs(cfg, 4, cfg) == pytest.approx(_lrs(cfg)[4:])


def test_a_resume_that_trains_longer_follows_the_longer_schedule() -> None:
    wsd = {"lr_schedule": "warmup_stable_decay", "lr_schedule_kwargs": {"num_decay_steps": 6, "min_lr_ratio": 0.1}}
    short, long = TrainerConfig(max_steps=6, lr=1.0, **wsd), TrainerConfig(max_steps=12, lr=1.0, **wsd)
    assert _resumed_lrs(short, 6, long) == pytest.approx(_lrs(long)[6:])  # the 6-step run's end is not reused
    assert _resumed_lrs(short, 3, TrainerConfig(max_steps=6, lr=0.5, **wsd)) == pytest.approx(
        [0.5 * x for x in _lrs(short)[3:]])  # nor its learning rate


@pytest.mark.parametrize(("overrides", "message"), [
    (["trainer.lr_schedule=cosine_with_min_lr", "trainer.lr_schedule_kwargs={min_lr_rat: 0.1}"],
     r"trainer.lr_schedule_kwargs.min_lr_rat: not an argument of lr_schedule=cosine_with_min_lr .*"
     r"did you mean 'min_lr_rate'\?"),
    (["trainer.lr_schedule=cosine_with_min_lr"], r"needs trainer.lr_schedule_kwargs.min_lr or .min_lr_rate"),
    (["trainer.lr_schedule=linear", "trainer.lr_schedule_kwargs={power: 2}"],
     r"not an argument of lr_schedule=linear \(it takes none\)"),
    (["trainer.lr_schedule=warmup_stable_decay"], r"needs trainer.lr_schedule_kwargs.num_decay_steps"),
    (["trainer.lr_schedule=warmup_stable_decay", "trainer.lr_schedule_kwargs={num_decay_steps: 13}"],
     r"num_decay_steps=13 must be in 1..12"),
    (["trainer.lr_schedule=cosin"], r"trainer.lr_schedule: Input should be 'constant', .*'cosine'"),
])
def test_bad_schedules_fail_when_the_config_loads(overrides: list[str], message: str, make_config) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(GRPOConfig, make_config(), overrides)


def test_trl_names_point_to_ours(make_config) -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'trainer.lr_schedule'\?"):
        load_config(GRPOConfig, make_config(), ["trainer.lr_scheduler_type=cosine"])
