"""From `rewards:` config entries to checked rewards (before any model loads): `build_spec` for one entry,
`from_config` for a run's whole list (columns checked against its data, labels distinct)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rewards.base import RewardSpec, function_spec
from rewards.contract import DRIVER_COLUMNS, OnError
from rewards.runner import WeightedRewards
from rewards.settings import JudgeSettings, RewardConfig, RewardModelSettings


def _check_every_row_has(spec, row_sets: list[list[dict]]) -> None:
    """A column the reward needs must be in every row (a row without it would fail the reward mid-run)."""
    for k, rows in enumerate(row_sets):
        for name in spec.needs_columns:
            missing = next((j for j, row in enumerate(rows, start=1) if name not in row), None)
            if missing is not None and any(name in row for row in rows):
                where = "training" if k == 0 else "held-out"
                raise ValueError(f"reward {spec.label!r} needs the dataset column {name!r}, which {where} row "
                                 f"{missing} lacks (other rows have it)")


def from_config(entries: list[RewardConfig], row_sets: list[list[dict]],
                extra: list[RewardSpec] | None = None) -> WeightedRewards:
    """The weighted sum of the configured rewards (none: an empty sum) and the driver's `extra` ones (an
    environment's `get_reward`). Each entry's dataset columns are checked against every non-empty row set it will
    score (training and held-out rows). ValueError naming `rewards.<i>` (or `rewards` for a clash between entries)
    before anything loads."""
    available = [(set().union(*rows) - {"prompt"}) | DRIVER_COLUMNS for rows in row_sets if rows]
    specs = []
    for i, r in enumerate(entries):
        try:
            spec = build_spec(name=r.name, fn=r.fn, judge=r.judge, model=r.model, weight=r.weight,
                              kwargs=r.kwargs, on_error=r.on_error, label=r.label, worker=r.worker)
            spec = replace(spec, timeout_s=r.timeout_s)
            for columns in available:
                spec.check_columns(columns)
            _check_every_row_has(spec, row_sets)
        except ValueError as e:
            raise ValueError(f"rewards.{i}: {e}") from None
        specs.append(spec)
    try:
        return WeightedRewards(specs + list(extra or []))
    except ValueError as e:
        raise ValueError(f"rewards: {e}") from None


def build_spec(
    *, name: str | None = None, fn: str | None = None, judge: JudgeSettings | None = None,
    model: RewardModelSettings | None = None, weight: float = 1.0, kwargs: dict | None = None,
    on_error: OnError = "raise", label: str | None = None, worker: bool = False,
) -> RewardSpec:
    """Exactly one of `name` (built-in), `fn` (user function), `judge` (judge LLM) or `model` (reward model).

    `worker`: run a name/fn reward in a Ray worker process of its own (`rewards.remote`).
    Raises ValueError naming the problem: unknown name, missing function, wrong signature, unknown option,
    unset API-key variable, missing reward-model directory. Nothing is loaded or started here.
    """
    sources = [k for k, v in {"name": name, "fn": fn, "judge": judge, "model": model}.items() if v is not None]
    if len(sources) != 1:
        raise ValueError(f"a reward needs exactly one of name / fn / judge / model, got {sources or 'none'}")
    if name is not None or fn is not None:
        spec = function_spec(name=name, fn=fn, weight=weight, kwargs=kwargs, on_error=on_error, label=label)
        if worker:
            from rewards.remote import RemoteReward

            spec.func = RemoteReward(name, fn)
        return spec
    if worker:
        raise ValueError(f"`worker: true` is for name:/fn: rewards; the {sources[0]} reward already runs outside "
                         "the driver (HTTP requests / its own actor)")
    if kwargs:
        raise ValueError(f"`kwargs` apply to name/fn rewards; set {sources[0]} options inside `{sources[0]}:`")
    if judge is not None:
        from rewards.judge import JudgeReward

        columns = tuple(c for c in (judge.reference_column, judge.question_column) if c)
        return RewardSpec(label or "judge", JudgeReward(judge), weight, {}, on_error, columns)
    from rewards.reward_model import RewardModelReward

    _check_model_path(model.path)
    return RewardSpec(label or "reward_model", RewardModelReward(model), weight, {}, on_error, ())


def _check_model_path(path: str) -> None:
    local = Path(path).expanduser()
    if local.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        if not (local / "config.json").is_file():
            raise ValueError(f"reward model path {path!r} is not a model directory (no config.json there)")
