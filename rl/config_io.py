"""Loading configs: YAML file + dotted `key=value` overrides → a validated pydantic model, with errors that
name the key and suggest the closest valid one. Also renders `--help` from the field docstrings.

No torch / Ray / vLLM here: `--help` and `--check` are instant.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")


class ConfigError(ValueError):
    """A user-facing configuration error (one message naming the key, the value and the fix)."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """`trainer.lr=1e-6` → (["trainer", "lr"], 1e-6). The value is parsed as YAML (numbers, bools, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub_key=value (e.g. trainer.lr=1e-6)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # Free text such as `data.system_prompt=Example: 1 + 2 = 3` stays a string; mappings and lists must be
    # written explicitly as {...} / [...].
    if isinstance(value, dict | list) and not raw.strip().startswith(("{", "[")):
        value = raw
    return key.strip().split("."), value


def apply_override(tree: dict, path: list[str], value: Any) -> None:
    """Set `tree[path[0]][path[1]]... = value`, creating dicts on the way; integer parts index into lists."""
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, path[: i + 1])]
            continue
        if not isinstance(node.get(part, {}), dict | list):
            raise ConfigError(f"cannot set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{'.'.join(path)}: {part!r} is not an index of a list of {len(node)} entries")
    return int(part)


def load_config(model: type[M], path: str | Path | None, overrides: list[str] = ()) -> M:
    """Read YAML at `path` (optional), apply overrides, validate. Raises ConfigError with a readable message."""
    tree: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections, got {type(tree).__name__}")
    for text in overrides:
        apply_override(tree, *parse_override(text))
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(format_validation_error(model, e, source=str(path) if path else "config")) from None


FIELD_SYNONYMS = {
    "learning_rate": "lr", "num_generations": "n", "max_completion_length": "max_new_tokens",
    "max_tokens": "max_new_tokens", "beta": "kl_beta", "kl_coef": "kl_beta", "epsilon": "eps_low",
    "epsilon_high": "eps_high", "num_iterations": "updates_per_batch", "ppo_epochs": "updates_per_batch",
    "per_device_train_batch_size": "micro_batch_size", "gradient_accumulation_steps": "mini_batches",
    "max_grad_norm_clip": "max_grad_norm", "loss_type": "aggregation", "num_workers": "workers",
    "lr_scheduler_type": "lr_schedule", "lr_scheduler_kwargs": "lr_schedule_kwargs", "warmup_style": "lr_schedule",
}
"""Names other toolkits (TRL, verl) use for a key, mapped to ours, for did-you-mean hints."""


def _suggest(name: str, known: list[str]) -> str | None:
    """The valid key `name` most likely meant: another toolkit's name for it (also misspelt), else the closest
    spelling."""
    synonym = difflib.get_close_matches(name, list(FIELD_SYNONYMS), n=1, cutoff=0.8)
    if synonym and FIELD_SYNONYMS[synonym[0]] in known:
        return FIELD_SYNONYMS[synonym[0]]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return close[0] if close else None


def format_validation_error(model: type[BaseModel], err: ValidationError, source: str) -> str:
    lines = [f"invalid {source}:"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            known = _fields_at(model, item["loc"][:-1])
            close = _suggest(str(item["loc"][-1]), known)
            hint = f" — did you mean {'.'.join([*map(str, item['loc'][:-1]), close])!r}?" if close else ""
            lines.append(f"  {key}: unknown key{hint} (valid here: {', '.join(sorted(known))})")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            value = item.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict) else ""
            lines.append(f"  {key or '<root>'}: {item['msg']}{shown}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model found by walking `loc` (list indexes skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        current = _model_in(field.annotation) if field else None
        if current is None:
            return []
    return list(current.model_fields) if _is_model(current) else []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every BaseModel inside `X`, `X | None`, `list[X]` or `Annotated[X | Y, ...]` (a tagged union's variants),
    in declaration order."""
    if _is_model(annotation):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The (first) BaseModel inside `annotation`, if any."""
    return next(iter(_models_in(annotation)), None)


def _variant_tag(model: type[BaseModel]) -> str:
    """The `type` literal that selects `model` in a tagged union (its class name without one)."""
    field = model.model_fields.get("type")
    tags = typing.get_args(field.annotation) if field is not None else ()
    return str(tags[0]) if tags else model.__name__


def describe(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per leaf key: `key  type = default  doc`, nested sections expanded; each variant of a tagged-union
    section is listed under its own `type`, with its first docstring paragraph."""
    lines = []
    for name, field in fields_in_order(model):
        key = f"{prefix}{name}"
        variants = _models_in(field.annotation)
        if variants and not _is_list(field.annotation):
            lines.append(f"{key}:  {field.description or ''}".rstrip())
            if len(variants) == 1:
                lines.extend(describe(variants[0], prefix=f"{key}."))
                continue
            for variant in variants:
                summary = " ".join((variant.__doc__ or "").split("\n\n")[0].split())
                lines.append(f"{key} (type: {_variant_tag(variant)}):  {summary}".rstrip())
                lines.extend(describe(variant, prefix=f"{key}."))
            continue
        if variants:
            lines.append(f"{key}[]:  {field.description or ''}".rstrip())
            lines.extend(describe(variants[0], prefix=f"{key}[]."))
            continue
        default = "required" if field.is_required() else f"= {field.get_default(call_default_factory=True)!r}"
        lines.append(f"  {key}  ({_type_name(field.annotation)}, {default})  {field.description or ''}".rstrip())
    return lines


def fields_in_order(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """(name, field) of a section: those in its `key_order` first, in that order, then the rest as declared."""
    order = getattr(model, "key_order", ())
    fields = model.model_fields
    return [(n, fields[n]) for n in order if n in fields] + [(n, f) for n, f in fields.items() if n not in order]


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def build_arg_parser(prog: str, model: type[BaseModel], description: str) -> argparse.ArgumentParser:
    """`--config FILE [--check] [key=value ...]`; `--help` lists every key with its doc."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (set in YAML or override as key=value):\n" + "\n".join(describe(model)),
    )
    parser.add_argument("--config", "-c", help="YAML config file")
    parser.add_argument("--check", action="store_true", help="validate config + overrides (and data, model paths); load nothing")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.lr=1e-6 rollout.n=16")
    return parser


def run_cli(parser: argparse.ArgumentParser, model: type[M], argv: list[str] | None, prepare: Callable[[M], P],
            summary: Callable[[M, P], str]) -> tuple[M, P] | None:
    """What every command line does before its real work: parse `argv` with `parser` (`build_arg_parser`), load
    and validate the config, run `prepare(cfg)` (the driver's pre-flight: everything that can be checked before a
    model loads). Bad input prints one `error: ...` line and exits 2; with `--check` prints `config ok: <summary>`
    and returns None; otherwise returns (cfg, what `prepare` returned)."""
    args = parser.parse_args(argv)
    try:
        cfg = load_config(model, args.config, args.overrides)
        prepared = prepare(cfg)
    except ValueError as e:  # ConfigError, DataError and every pre-flight check raise ValueErrors
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        print(f"config ok: {summary(cfg, prepared)}")
        return None
    return cfg, prepared


def dump_config(cfg: BaseModel, path: Path) -> None:
    """Write the resolved config (every default filled in) as YAML, each section's keys in `--help`'s order."""
    path.write_text(yaml.safe_dump(_ordered(cfg, cfg.model_dump(mode="json")), sort_keys=False))


def _ordered(value: Any, dumped: Any) -> Any:
    """`dumped` (the JSON dump of `value`) with every section's keys in `fields_in_order`."""
    if isinstance(value, BaseModel):
        return {name: _ordered(getattr(value, name), dumped[name]) for name, _ in fields_in_order(type(value))}
    if isinstance(value, list | tuple) and isinstance(dumped, list):
        return [_ordered(v, d) for v, d in zip(value, dumped)]
    return dumped
