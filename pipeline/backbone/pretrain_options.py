"""Inputs of the tiny backbone's optional pretraining terms (``backbone.tiny``: tag sentences,
fresh synthetic clips; see :mod:`pipeline.backbone.tiny`).

The backbone stage of ``dvc.yaml`` never uses these options (it passes neither ``tags.parquet``
nor the prepared videos table), so :mod:`pipeline.backbone.tiny` does not import this module: the
synthetic generator and the taggers it reaches stay out of the stage's dependencies. Library
callers (``experiments/``) build a :class:`PretrainOptions` and hand it to
:func:`pipeline.backbone.build.build_backbone` or :func:`pipeline.backbone.tiny.pretrain_tiny`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.backbone.base import Backbone, TextBatch
from pipeline.backbone.data import VideoTextSet
from pipeline.backbone.stream import ClipGeometry, FreshBatch, clip_geometry, fresh_batch
from pipeline.backbone.tiny import TAG_DRAWS
from pipeline.features.tags import draw_tags, item_rng, tag_sentence

if TYPE_CHECKING:
    from pipeline.tags.offline_visual import OfflineVisualConfig


def with_tags(data: VideoTextSet, tags_path: str | Path) -> VideoTextSet:
    """``data`` with each caption's textual and each video's visual tags from ``tags.parquet``
    (missing ones are empty)."""
    from pipeline.features.inputs import load_tags

    tables = load_tags(tags_path)
    return dataclasses.replace(data, caption_tags=[tables["textual"].get(c, []) for c in data.caption_ids],
                               video_tags=[tables["visual"].get(v, []) for v in data.video_ids])


class FreshTagger:
    """Visual tags of fresh clips, written from their scenes in the offline tagger's vocabulary."""

    TEMPERATURES = (0.7, 0.8, 0.9, 1.0)  # tag_video's four instances

    def __init__(self, cfg: "OfflineVisualConfig") -> None:
        from pipeline.tags.lexicon import load_lexicon

        self.cfg, self.lexicon = cfg, load_lexicon(cfg.lexicon)

    def sentences(self, scenes: list[dict], per_sentence: int, rng: np.random.Generator) -> list[str]:
        from pipeline.features.tag_control import scene_visual_tags

        out = []
        for scene in scenes:
            temperature = self.TEMPERATURES[int(rng.integers(len(self.TEMPERATURES)))]
            tags = scene_visual_tags(scene, temperature, int(rng.integers(2**31)), self.lexicon, self.cfg)
            out.append(tag_sentence(draw_tags(tags, per_sentence, rng)))
        return out


@dataclass(frozen=True)
class PretrainOptions:
    """``tags``: ``tags.parquet`` (``tag_text_weight`` / ``tag_visual_weight``); ``geometry``: the
    prepared clips' size, frame rate and lengths (``fresh_fraction``); ``visual_tagger``: params
    ``tag_video.offline``, to write fresh clips' visual tags (``tag_visual_weight`` with fresh clips)."""

    tags: Path | None = None
    geometry: ClipGeometry | None = None
    visual_tagger: Any = None

    @classmethod
    def from_files(cls, frames_dir: str | Path, tags: str | Path | None = None, videos: str | Path | None = None,
                   visual_tagger: Any = None) -> "PretrainOptions":
        """Options from the pipeline's files (``videos``: the prepared videos table)."""
        geometry = None if videos is None else clip_geometry(videos, frames_dir)
        return cls(None if tags is None else Path(tags), geometry, visual_tagger)

    def attach_tags(self, data: VideoTextSet) -> VideoTextSet:
        return data if self.tags is None else with_tags(data, self.tags)

    def tag_tokens(self, backbone: Backbone, item_tags: list[list[str]], item_ids: list[str], per_sentence: int,
                   seed: int, context_length: int, modality: str) -> TextBatch:
        """Tokens of ``TAG_DRAWS`` random ``per_sentence``-tag sentences per item (drawn as the
        features stage draws its training sentences): item i's draw k is row ``i * TAG_DRAWS + k``."""
        sentences = []
        for item, tags in zip(item_ids, item_tags):
            rng = item_rng(seed, f"backbone-{modality}", item)
            sentences += [tag_sentence(draw_tags(tags, per_sentence, rng)) for _ in range(TAG_DRAWS)]
        return backbone.tokenize(sentences, context_length)

    def fresh(self, n: int, frames_per_sample: int, captions_per_sample: int, seed: int, step: int,
              full_captions: float, siblings: int) -> FreshBatch:
        return fresh_batch(self.geometry, n, frames_per_sample, captions_per_sample, seed, step, full_captions,
                           siblings)

    def fresh_tagger(self) -> FreshTagger:
        if self.visual_tagger is None:
            raise ValueError("tiny.tag_visual_weight > 0 with fresh clips needs the visual tagger's config "
                             "(tag_video.offline) to write their tags")
        return FreshTagger(self.visual_tagger)
