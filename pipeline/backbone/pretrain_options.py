"""Inputs of the tiny backbone's fresh-clip pretraining options (``backbone.tiny``:
``fresh_fraction`` and, with fresh clips, ``tag_visual_weight``; see :mod:`pipeline.backbone.tiny`).

The backbone stage of ``dvc.yaml`` passes ``tags.parquet`` only (a
:class:`~pipeline.backbone.tag_terms.TagOptions`), never the prepared videos table, so
:mod:`pipeline.backbone.tiny` does not import this module: the synthetic generator and the taggers
it reaches stay out of the stage's dependencies. Library callers (``experiments/``) build a
:class:`PretrainOptions` and hand it to :func:`pipeline.backbone.build.build_backbone` or
:func:`pipeline.backbone.tiny.pretrain_tiny`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.backbone.stream import ClipGeometry, FreshBatch, clip_geometry, fresh_batch
from pipeline.backbone.tag_terms import TagOptions
from pipeline.tags.sentences import draw_tags, tag_sentence

if TYPE_CHECKING:
    from pipeline.tags.offline_visual import OfflineVisualConfig


class FreshTagger:
    """Visual tags of fresh clips, written from their scenes in the offline tagger's vocabulary."""

    TEMPERATURES = (0.7, 0.8, 0.9, 1.0)  # tag_video's four instances

    def __init__(self, cfg: "OfflineVisualConfig") -> None:
        from pipeline.tags.lexicon import load_lexicon

        self.cfg, self.lexicon = cfg, load_lexicon(cfg.lexicon)

    def sentences(self, scenes: list[dict], per_sentence: int, rng: np.random.Generator) -> list[str]:
        from pipeline.tags.oracle import scene_visual_tags

        out = []
        for scene in scenes:
            temperature = self.TEMPERATURES[int(rng.integers(len(self.TEMPERATURES)))]
            tags = scene_visual_tags(scene, temperature, int(rng.integers(2**31)), self.lexicon, self.cfg)
            out.append(tag_sentence(draw_tags(tags, per_sentence, rng)))
        return out


@dataclass(frozen=True)
class PretrainOptions(TagOptions):
    """:class:`~pipeline.backbone.tag_terms.TagOptions` (``tags``: ``tags.parquet``) plus the
    fresh-clip inputs: ``geometry``, the prepared clips' size, frame rate and lengths
    (``fresh_fraction``); ``visual_tagger``: params ``tag_video.offline``, to write fresh clips'
    visual tags (``tag_visual_weight`` with fresh clips)."""

    geometry: ClipGeometry | None = None
    visual_tagger: Any = None

    @classmethod
    def from_files(cls, frames_dir: str | Path, tags: str | Path | None = None, videos: str | Path | None = None,
                   visual_tagger: Any = None) -> "PretrainOptions":
        """Options from the pipeline's files (``videos``: the prepared videos table)."""
        geometry = None if videos is None else clip_geometry(videos, frames_dir)
        return cls(None if tags is None else Path(tags), geometry, visual_tagger)

    def fresh(self, n: int, frames_per_sample: int, captions_per_sample: int, seed: int, step: int,
              full_captions: float, siblings: int) -> FreshBatch:
        return fresh_batch(self.geometry, n, frames_per_sample, captions_per_sample, seed, step, full_captions,
                           siblings)

    def fresh_tagger(self) -> FreshTagger:
        if self.visual_tagger is None:
            raise ValueError("tiny.tag_visual_weight > 0 with fresh clips needs the visual tagger's config "
                             "(tag_video.offline) to write their tags")
        return FreshTagger(self.visual_tagger)
