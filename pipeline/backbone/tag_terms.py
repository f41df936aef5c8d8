"""Tag sentences for the tiny backbone's tag pretraining terms (``backbone.tiny``:
``tag_text_weight``, ``tag_visual_weight``, ``tag_pair_weight``).

Why the tiny CLIP needs them: a real CLIP's text tower has read the web, so it already places
"a video of dog, running, grass" near "a puppy runs on the lawn" and near the tags another model
wrote for the same clip. The tiny text tower has read only the synthetic captions; without these
terms a keyword list is out of distribution for it, and MAC-VR's tag concepts carry little.

This module is light on purpose (the tags table and the features stage's sentence draws): the
backbone stage imports it, while the fresh-clip options (:mod:`pipeline.backbone.pretrain_options`)
stay with the library callers in ``experiments/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.backbone.base import Backbone, TextBatch
from pipeline.backbone.data import VideoTextSet
from pipeline.tags.sentences import draw_tags, item_rng, tag_sentence

TAG_DRAWS = 4  # pre-tokenised tag sentences per item for the tag terms (TagOptions.tag_tokens)


def with_tags(data: VideoTextSet, tags_path: str | Path) -> VideoTextSet:
    """``data`` with each caption's textual and each video's visual tags from ``tags.parquet``
    (missing ones are empty)."""
    from pipeline.tags.table import read_tags

    table = read_tags(tags_path)
    if data.caption_ids is None:
        raise ValueError("tag terms need the captions' ids to find their textual tags")
    return dataclasses.replace(data, caption_tags=[table.textual.get(c, []) for c in data.caption_ids],
                               video_tags=[table.visual.get(v, []) for v in data.video_ids])


@dataclass(frozen=True)
class TagOptions:
    """What the tiny backbone's tag terms read: ``tags`` (``tags.parquet``). The backbone stage
    passes this; :class:`~pipeline.backbone.pretrain_options.PretrainOptions` adds the fresh-clip
    inputs (``geometry``, ``visual_tagger``), which only library callers have."""

    tags: Path | None = None

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
