"""Typed, strict configuration loading.

Every stage reads exactly one section of ``params.yaml`` into a frozen dataclass.
All fields are required (no silent defaults: each knob lives once, in params.yaml) and
unknown keys are refused, with an error naming the key and the file. A field marked with
:func:`library_only_field` is not a params knob: it has a default, library callers (the
``experiments/`` harness) set it in code, and a params file naming it is refused with the field's
reason (a knob ``dvc repro`` cannot use does not belong in ``params.yaml``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A params file does not match the typed config it is loaded into."""


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a YAML params file into a dict (empty file -> empty dict)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(cls: type[T], section: str, params_path: str | Path = "params.yaml") -> T:
    """Load ``section`` of ``params_path`` into the frozen dataclass ``cls``."""
    data = load_params(params_path)
    if section not in data:
        raise ConfigError(f"{params_path}: missing section '{section}'")
    return from_mapping(cls, data[section], where=f"{params_path}: {section}")


def _init_fields(cls: type, mapping: Any, where: str) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """(type hints, init fields by name) of dataclass ``cls``, once ``mapping`` is known to be a dict."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def from_mapping(cls: type[T], mapping: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types recursively."""
    hints, fields = _init_fields(cls, mapping, where)
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}'" + (f" (and {unknown[1:]})" if unknown[1:] else "")
            + f"; allowed keys: {sorted(fields)}"
        )
    library_only = sorted(n for n in mapping if LIBRARY_ONLY_KEY in fields[n].metadata)
    if library_only:
        name = library_only[0]
        raise ConfigError(f"{where}: '{name}' is not a params knob: {fields[name].metadata[LIBRARY_ONLY_KEY]}")
    kwargs = {}
    for name, field in fields.items():
        if name not in mapping:
            has_default = (field.default is not dataclasses.MISSING
                           or field.default_factory is not dataclasses.MISSING)
            if has_default:
                continue
            raise ConfigError(f"{where}: missing key '{name}'")
        registry = field.metadata.get(REGISTRY_KEY)
        if registry is not None:
            kwargs[name] = _coerce_registered(registry(), mapping[name], f"{where}.{name}")
        else:
            kwargs[name] = _coerce(hints[name], mapping[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {err}") from None


REGISTRY_KEY = "macvr_registry"
LIBRARY_ONLY_KEY = "macvr_library_only"


def library_only_field(default: Any, why: str) -> Any:
    """A dataclass field set by library callers only; ``why`` is the error a params file naming it gets."""
    return dataclasses.field(default=default, metadata={LIBRARY_ONLY_KEY: why})


def registry_field(registry: Callable[[], Any], **kwargs: Any) -> Any:
    """A config field holding ``{registered name: its params}``, validated through a registry.

    ``registry`` returns a :class:`pipeline.registry.Registry` (called at load time, so entries
    registered after import count) whose entries have a ``params_type`` dataclass. Each key must
    be registered; each value (``null`` = ``{}``) is loaded strictly into that entry's
    ``params_type``. The result is an ordered ``dict`` (params.yaml order).
    """
    return dataclasses.field(metadata={REGISTRY_KEY: registry}, **kwargs)


def _coerce_registered(registry: Any, value: Any, where: str) -> dict[str, Any]:
    from pipeline.registry import RegistryError

    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of {registry.kind} names, got {value!r}")
    out = {}
    for name, params in value.items():
        try:
            entry = registry.get(str(name))
        except RegistryError as err:
            raise ConfigError(f"{where}: {err}") from None
        out[str(name)] = from_mapping(entry.params_type, {} if params is None else params, f"{where}.{name}")
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def from_stored(cls: type[T], mapping: Any, where: str, legacy: dict[str, Any] | None = None,
                dropped: list[str] | None = None) -> T:
    """Like :func:`from_mapping`, for configs stored by an older or newer version of this code
    (checkpoints): a missing key takes its ``legacy`` value (dotted name -> the value that
    reproduces how the stored artifact was made), else the field's default; a key this code no
    longer knows is dropped and listed in ``dropped``. Only a missing key with neither is an
    error, naming the key. Types and values are checked as in params.yaml.
    """
    legacy = legacy or {}
    hints, fields = _init_fields(cls, mapping, where)
    mapping = dict(mapping)
    for name in sorted(set(mapping) - set(fields)):
        if dropped is not None:
            dropped.append(f"{where}.{name}")
        del mapping[name]
    for name, field in fields.items():
        tp = hints[name]
        key = f"{where.rsplit(': ', 1)[-1]}.{name}"
        if dataclasses.is_dataclass(tp) and name in mapping:
            sub_legacy = {k.split(".", 1)[1]: v for k, v in legacy.items() if k.split(".", 1)[0] == name and "." in k}
            mapping[name] = dataclasses.asdict(from_stored(tp, mapping[name], f"{where}.{name}", sub_legacy, dropped))
        elif name not in mapping:
            if name in legacy:
                mapping[name] = legacy[name]
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: the stored config lacks '{name}' ({key}), which has no default: "
                                  "it was written by a version of this code that did not know it")
    return from_mapping(cls, mapping, where)


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of a config dataclass (for dvc.yaml ``params:``)."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            keys.extend(leaf_keys(tp, name + "."))
        else:
            keys.append(name)
    return keys


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config (for checkpoints and logs)."""
    return dataclasses.asdict(config)
