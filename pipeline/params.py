"""The whole params file: every section's typed config, and the checks that sections agree.

Each stage reads its own sections (a strict typed config each). Some values must agree across
sections -- the backbone's input size and ``frames.image_size``, the backbone's text context and
``text.max_words``, the head's concept count and the backbone's width, the batch size and the
number of training pairs -- and a mismatch used to surface only when a later stage failed. Here
they are checked up front: by ``macvr check-params`` for the whole file, and by each stage for
the checks that involve its sections, with messages that name both keys.

``train`` is special: it is only complete with a variant's overrides (see
:mod:`pipeline.train.variants`), so it is checked once per entry of ``variants``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, from_mapping, load_params

#: section -> "module:ConfigClass" (imported lazily: a check must not pull in torch needlessly)
SECTIONS: dict[str, str] = {
    "text": "pipeline.text:TextConfig",
    "prepare": "pipeline.data.prepare:PrepareConfig",
    "frames": "pipeline.frames.extract:FramesConfig",
    "backbone": "pipeline.backbone.config:BackboneConfig",
    "released": "pipeline.released.config:ReleasedConfig",
    "tag_text": "pipeline.tags.tag_text:TagTextConfig",
    "tag_video": "pipeline.tags.tag_video:TagVideoConfig",
    "clean_tags": "pipeline.tags.clean:CleanConfig",
    "caption_video": "pipeline.aux_captions.config:CaptionVideoConfig",
    "caption_text": "pipeline.aux_captions.config:CaptionTextConfig",
    "clean_captions": "pipeline.aux_captions.config:CleanCaptionsConfig",
    "features": "pipeline.features.config:FeaturesConfig",
    "evaluate": "pipeline.evaluation.config:EvaluateConfig",
    "compare": "pipeline.compare.config:CompareConfig",
    "report": "pipeline.report.config:ReportConfig",
    "search": "pipeline.index.config:SearchConfig",
}
TRAIN = "train"
VARIANTS = "variants"


def config_class(section: str) -> type:
    module, _, name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module), name)


class Params:
    """A params file's sections, each loaded on first use (errors kept per section)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.raw = load_params(self.path)
        self._loaded: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, section: str) -> Any | None:
        """The typed config of ``section`` (None if it failed to load: see ``errors``)."""
        if section not in self._loaded:
            try:
                if section not in self.raw:
                    raise ConfigError(f"{self.path}: missing section '{section}'")
                self._loaded[section] = from_mapping(config_class(section), self.raw[section],
                                                     where=f"{self.path}: {section}")
            except ConfigError as err:
                self._loaded[section] = None
                self.errors[section] = str(err)
        return self._loaded[section]

    def variants(self) -> dict[str, Any]:
        """``{variant: resolved TrainConfig}`` of every loadable entry of ``variants``."""
        if VARIANTS not in self._loaded:
            from pipeline.train.config import TrainConfig
            from pipeline.train.variants import resolve_train

            out = {}
            entries = self.raw.get(VARIANTS)
            if not isinstance(entries, dict) or not entries:
                self.errors[VARIANTS] = f"{self.path}: variants must be a non-empty mapping of variant names"
                entries = {}
            for name, spec in entries.items():
                try:
                    out[str(name)] = resolve_train(self.raw.get(TRAIN), str(name), spec, TrainConfig, str(self.path))
                except ConfigError as err:
                    self.errors[f"{VARIANTS}.{name}"] = str(err)
            self._loaded[VARIANTS] = out
        return self._loaded[VARIANTS]


@dataclass(frozen=True)
class Check:
    """An agreement between sections; ``fn`` returns problems (empty when they agree)."""

    sections: frozenset[str]
    fn: Callable[[Params], list[str]]


CHECKS: list[Check] = []


def check(*sections: str):
    def add(fn: Callable[[Params], list[str]]) -> Callable[[Params], list[str]]:
        CHECKS.append(Check(frozenset(sections), fn))
        return fn

    return add


def _backbone_facts(p: Params) -> dict[str, int | None]:
    """What the backbone section implies without loading weights: embed_dim, image size,
    context length, text width/heads (None = only known from the weights)."""
    b = p.get("backbone")
    if b is None:
        return {}
    if b.kind == "tiny":
        text = p.get("text")
        return {"embed_dim": b.tiny.embed_dim, "image_size": None,
                "context": text.max_words if text else None,
                "text_width": b.tiny.text_width, "text_heads": b.tiny.text_heads}
    if b.kind == "clip":
        from pipeline.backbone.arch import KNOWN_ARCHS

        arch = KNOWN_ARCHS.get(b.model)
        if arch is None:
            return {}
        return {"embed_dim": arch.embed_dim, "image_size": arch.image_resolution, "context": arch.context_length,
                "text_width": arch.transformer_width, "text_heads": arch.transformer_heads}
    family = b.family
    return {"embed_dim": None, "image_size": family.expected_image_size(b),
            "context": family.expected_context_length(b)}


@check("frames", "backbone")
def _image_size(p: Params) -> list[str]:
    frames, b = p.get("frames"), p.get("backbone")
    if frames is None or b is None:
        return []
    if b.kind == "tiny":
        if frames.image_size % b.tiny.vision_patch_size:
            return [f"frames.image_size ({frames.image_size}) must be a multiple of "
                    f"backbone.tiny.vision_patch_size ({b.tiny.vision_patch_size}): the tiny CLIP's input is the "
                    f"frames' size"]
        return []
    size = _backbone_facts(p).get("image_size")
    if size is not None and size != frames.image_size:
        return [f"frames.image_size ({frames.image_size}) differs from the input size of backbone.model "
                f"{b.model} ({size}): set frames.image_size: {size}"]
    return []


@check("text", "backbone")
def _text_length(p: Params) -> list[str]:
    text, b = p.get("text"), p.get("backbone")
    context = _backbone_facts(p).get("context")
    if text is None or b is None or context is None or b.kind == "tiny":
        return []
    if text.max_words > context:
        return [f"text.max_words ({text.max_words}) exceeds the text context of backbone.model {b.model} "
                f"({context} tokens)"]
    return []


@check("backbone", "train", "variants", "frames", "text")
def _head_fits_backbone(p: Params) -> list[str]:
    facts = _backbone_facts(p)
    dim = facts.get("embed_dim")
    frames = p.get("frames")
    problems = []
    for name, cfg in p.variants().items():
        m = cfg.model
        if dim is not None and dim % m.num_concepts:
            problems.append(f"train.model.num_concepts ({m.num_concepts}) must divide the backbone width "
                            f"({dim}, backbone{'.tiny.embed_dim' if p.get('backbone').kind == 'tiny' else '.model'})")
        if dim is not None and m.temporal_layers and dim % m.temporal_heads:
            problems.append(f"train.model.temporal_heads ({m.temporal_heads}) must divide the backbone width ({dim})")
        if cfg.init_temporal_from_backbone and m.temporal_layers:
            width, heads, context = facts.get("text_width"), facts.get("text_heads"), facts.get("context")
            if width is not None and dim is not None and width != dim:
                problems.append(f"train.init_temporal_from_backbone needs the backbone's text width ({width}) to "
                                f"equal its embedding width ({dim}) (variant {name})")
            if heads is not None and heads != m.temporal_heads:
                problems.append(f"train.init_temporal_from_backbone needs train.model.temporal_heads "
                                f"({m.temporal_heads}) = the backbone's text heads ({heads})")
            if context is not None and frames is not None and context < frames.num_frames:
                problems.append(f"train.init_temporal_from_backbone copies {frames.num_frames} text positions "
                                f"(frames.num_frames) but the backbone's text has {context} (text.max_words for tiny)")
    return sorted(set(problems))


@check("prepare", "train", "variants")
def _batch_fits_data(p: Params) -> list[str]:
    prep = p.get("prepare")
    if prep is None or prep.dataset != "synthetic":
        return []  # real datasets: the train stage checks against the actual pairs
    s = prep.params
    pairs = s.train_count() * s.captions_per_video
    return sorted({f"train.batch_size ({cfg.batch_size}) exceeds the {pairs} training pairs of the synthetic dataset "
                   f"(prepare.datasets.synthetic: num_videos, test_fraction, val_fraction, captions_per_video)"
                   for cfg in p.variants().values() if cfg.batch_size > pairs})


@check("compare", "variants")
def _baseline_is_trained(p: Params) -> list[str]:
    compare = p.get("compare")
    names = list((p.raw.get(VARIANTS) or {}))
    if compare is None or not names:
        return []
    if compare.baseline not in names:
        return [f"compare.baseline ({compare.baseline}) is not one of the trained variants ({', '.join(names)})"]
    return []


def check_agreement(path: str | Path, sections: set[str] | None = None) -> list[str]:
    """Problems of the checks that involve any of ``sections`` (all checks when None); sections
    that do not load are left to their own error."""
    p = Params(path)
    out = []
    for c in CHECKS:
        if sections is None or c.sections & sections:
            out.extend(c.fn(p))
    return out


def check_file(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """``(errors by section, agreement problems)`` of a whole params file."""
    p = Params(path)
    for section in SECTIONS:
        p.get(section)
    p.variants()
    problems = []
    for c in CHECKS:
        problems.extend(c.fn(p))
    return dict(p.errors), problems


@check("features", "train", "variants")
def _auxiliary_captions_cached(p: Params) -> list[str]:
    """Auxiliary captions reach the model only through the cached features' encodings; fine-tuning
    re-encodes from tags.parquet, which holds tags."""
    features = p.get("features")
    if features is None or not features.auxiliary.any_captions:
        return []
    return sorted({f"features.auxiliary reads auxiliary captions, but variant {name} re-encodes its tag "
                   f"inputs from tags.parquet (train.mode: finetune); auxiliary captions need train.mode: cached"
                   for name, cfg in p.variants().items() if cfg.uses_tags and cfg.mode == "finetune"})
