"""Model variants: named override sets of the ``train`` section, registered in one place.

A variant is what makes one trained model differ from another of the same run: DiCoSA (no
tags), MAC-VR (visual + textual tags), and the paper's Tab. 4 ablations. The shared knobs live in
``params.yaml: train``; the variant-only knobs (:data:`VARIANT_KEYS`: which tags the confidence
MLP sees and the alignment-loss weight) live only in variants, so changing one variant's knob
re-runs only that variant's stages.

``params.yaml: variants`` lists the variants ``dvc repro`` trains and evaluates (one
``train@<name>`` / ``evaluate@<name>`` stage each). Each entry is a mapping of extra overrides
of ``train`` (nested like ``train`` itself), applied on top of the registered variant of the same
name, or of the one named by ``base``::

    variants:
      dicosa: {}
      macvr: {}
      macvr_a05: {base: macvr, loss: {alpha_align: 0.5}}   # an ablation defined in params only
      macvr_paper: {base: macvr, released: weights/msrvtt/pytorch_model.bin}   # the authors' checkpoint

``released: <file>`` (relative to ``params.yaml: released.dir``) makes the variant's train stage
import that official checkpoint instead of training (:mod:`pipeline.released.checkpoint`); the
registered base decides which official model class it is (``dicosa``: DiCoSA's, else MAC-VR's).

Adding a variant in code: one ``register_variant(Variant(...))`` line below (or in a plugin).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, from_mapping, load_params
from pipeline.registry import Registry

#: Keys only variants may set (dotted paths in the train section).
VARIANT_KEYS = ("model.tags", "loss.alpha_align")
#: Keys of a variant entry that are not train overrides.
ENTRY_KEYS = ("base", "released")
#: The variant the others are compared with (paired differences, report tables).
BASELINE = "dicosa"


@dataclass(frozen=True)
class Variant:
    """A named set of overrides of the ``train`` section (nested mapping)."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


VARIANTS: Registry[Variant] = Registry("model variant", "pipeline/train/variants.py")


def register_variant(variant: Variant) -> Variant:
    VARIANTS.register(variant.name, variant)
    return variant


def _tags(tags: list[str], alpha_align: float) -> dict[str, Any]:
    return {"model": {"tags": tags}, "loss": {"alpha_align": alpha_align}}


# The paper's models (Tab. 2) and Tab. 4 ablations, one line each.
register_variant(Variant("dicosa", "DiCoSA: no tags (the baseline)", _tags([], 0.0)))
register_variant(Variant("macvr", "MAC-VR: visual + textual tags, alignment loss", _tags(["visual", "textual"], 1.0)))
register_variant(Variant("macvr_no_vt", "MAC-VR without visual tags (Tab. 4)", _tags(["textual"], 1.0)))
register_variant(Variant("macvr_no_tt", "MAC-VR without textual tags (Tab. 4)", _tags(["visual"], 1.0)))
register_variant(Variant("macvr_no_la", "MAC-VR without the alignment loss (Tab. 4)",
                         _tags(["visual", "textual"], 0.0)))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` applied recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _has(mapping: dict[str, Any], dotted: str) -> bool:
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def variant_overrides(name: str, spec: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """The full overrides of variant ``name``: its registered base's, then ``spec``'s."""
    if spec is not None and not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping of train overrides, got {spec!r}")
    spec = dict(spec or {})
    base = spec.pop("base", None)
    spec.pop("released", None)
    if base is None and name not in VARIANTS:
        raise ConfigError(f"{where}: {name!r} is not a registered variant "
                          f"({', '.join(VARIANTS.names())}); give it a 'base' to start from")
    try:
        registered = VARIANTS.get(str(base if base is not None else name))
    except KeyError as err:
        raise ConfigError(f"{where}.base: {err}") from None
    return deep_merge(registered.overrides, spec)


def resolve_train(train: dict[str, Any], name: str, spec: dict[str, Any] | None, cls: type,
                  where: str = "params.yaml") -> Any:
    """The typed ``cls`` (TrainConfig) of variant ``name``: ``train`` + the variant's overrides."""
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: train: expected a mapping")
    for key in VARIANT_KEYS:
        if _has(train, key):
            raise ConfigError(f"{where}: train.{key} is set per variant (params.yaml: variants, "
                              f"pipeline/train/variants.py); remove it from the train section")
    merged = deep_merge(train, variant_overrides(name, spec, f"{where}: variants.{name}"))
    for key in VARIANT_KEYS:
        if not _has(merged, key):
            raise ConfigError(f"{where}: variants.{name} does not set {key}")
    return from_mapping(cls, merged, where=f"{where}: train + variants.{name}")


def load_variant(params: str | Path, name: str, cls: type) -> Any:
    """Variant ``name``'s resolved train config from a params file (``variants.<name>`` may be
    absent for a registered variant: it then has no extra overrides)."""
    data = load_params(params)
    if "train" not in data:
        raise ConfigError(f"{params}: missing section 'train'")
    variants = data.get("variants") or {}
    if not isinstance(variants, dict):
        raise ConfigError(f"{params}: variants: expected a mapping of variant names")
    if name not in variants and name not in VARIANTS:
        raise ConfigError(f"{params}: variant {name!r} is neither in params.yaml's variants "
                          f"({', '.join(variants) or 'none'}) nor registered ({', '.join(VARIANTS.names())})")
    return resolve_train(data["train"], name, variants.get(name), cls, where=str(params))


def params_variants(params: str | Path) -> list[str]:
    """The variants a params file asks ``dvc repro`` to train (``variants`` keys, in order)."""
    variants = load_params(params).get("variants") or {}
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{params}: variants must be a non-empty mapping of variant names")
    return [str(v) for v in variants]


def variant_released(params: str | Path, name: str) -> str | None:
    """The released checkpoint a variant imports instead of training (``variants.<name>.released``),
    or None; a non-string value is an error."""
    variants = load_params(params).get("variants") or {}
    spec = variants.get(name) if isinstance(variants, dict) else None
    value = spec.get("released") if isinstance(spec, dict) else None
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{params}: variants.{name}.released must be a checkpoint file path, got {value!r}")
    return value
