"""Typed configuration of the ``backbone`` stage (``params.yaml: backbone``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class TinyClipConfig:
    """A small CLIP (clip-anytorch's ``CLIP`` class) pretrained here, contrastively.

    Widths follow clip-anytorch's constraints: the vision tower always uses
    ``vision_width // 64`` heads (so the width must be a multiple of 64); the text tower's
    head count is free but must divide its width. The vocabulary is CLIP's BPE (49408).
    Training (see :mod:`pipeline.backbone.tiny`): ``epochs`` over the train videos in
    batches of ``batch_size`` videos; each video is the mean embedding of
    ``frames_per_sample`` random real frames (in time order) read out by ``temporal``
    (``mean``: frame mean; ``delta``: plus a learnt map of the late-minus-early change, see
    :mod:`pipeline.backbone.tiny`), matched with ``captions_per_sample`` of its captions;
    ``tag_text_weight`` > 0 adds a caption-to-own-textual-tags InfoNCE (sentences of
    ``tags_per_sentence`` tags) so the text tower learns the tag vocabulary;
    ``tag_visual_weight`` > 0 adds a video-to-own-visual-tags InfoNCE (the video embedding
    against a sentence of ``tags_per_sentence`` of its visual tags: the training split's from
    ``tags.parquet``, a fresh clip's written from its scene in the offline visual tagger's
    vocabulary) so tag sentences land near the videos they describe; ``fresh_fraction``
    of every batch is newly generated synthetic clips (synthetic data only, see
    :mod:`pipeline.backbone.stream`), whose captions are full scene descriptions with
    probability ``fresh_full_captions`` (else partial, like the dataset's), in groups of
    ``fresh_siblings`` look-alike scenes (hard negatives: same colours and background); AdamW with ``lr``, ``weight_decay`` (matrices only), linear warmup over
    ``warmup_frac`` of the steps then cosine decay; ``seed`` fixes init and sampling.
    """

    embed_dim: int
    image_resolution: int
    vision_patch_size: int
    vision_width: int
    vision_layers: int
    text_width: int
    text_heads: int
    text_layers: int
    context_length: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float
    frames_per_sample: int
    captions_per_sample: int
    seed: int
    temporal: Literal["mean", "delta"] = "mean"
    tag_text_weight: float = 0.0
    tag_visual_weight: float = 0.0
    tags_per_sentence: int = 6
    fresh_fraction: float = 0.0
    fresh_full_captions: float = 0.0
    fresh_siblings: int = 1

    def __post_init__(self) -> None:
        positive = ("embed_dim", "image_resolution", "vision_patch_size", "vision_width",
                    "vision_layers", "text_width", "text_heads", "text_layers", "context_length",
                    "epochs", "frames_per_sample", "captions_per_sample")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"tiny.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_resolution % self.vision_patch_size:
            raise ValueError(f"tiny.image_resolution ({self.image_resolution}) must be a multiple "
                             f"of tiny.vision_patch_size ({self.vision_patch_size})")
        if self.vision_width % 64:
            raise ValueError(f"tiny.vision_width must be a multiple of 64 (clip-anytorch uses "
                             f"width // 64 vision heads), got {self.vision_width}")
        if self.text_width % self.text_heads:
            raise ValueError(f"tiny.text_width ({self.text_width}) must be divisible by "
                             f"tiny.text_heads ({self.text_heads})")
        if self.context_length < 3:
            raise ValueError(f"tiny.context_length must be >= 3 (start, a token, end), "
                             f"got {self.context_length}")
        if self.batch_size < 2:
            raise ValueError(f"tiny.batch_size must be >= 2 (a contrastive batch needs "
                             f"negatives), got {self.batch_size}")
        for name in ("fresh_fraction", "fresh_full_captions"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"tiny.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fresh_siblings < 1:
            raise ValueError(f"tiny.fresh_siblings must be >= 1, got {self.fresh_siblings}")
        if self.tag_text_weight < 0 or self.tag_visual_weight < 0 or self.tags_per_sentence < 1:
            raise ValueError("tiny.tag_text_weight and tiny.tag_visual_weight must be >= 0 and "
                             "tiny.tags_per_sentence >= 1")
        if not self.lr > 0:
            raise ValueError(f"tiny.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"tiny.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"tiny.warmup_frac must be in [0, 1), got {self.warmup_frac}")


@dataclass(frozen=True)
class BackboneConfig:
    """Which CLIP the pipeline uses.

    ``kind: vit-b-32`` loads OpenAI's ViT-B/32 from ``path`` (the ``ViT-B-32.pt`` JIT archive
    or a state dict), else clip's cache ``~/.cache/clip/ViT-B-32.pt``, else downloads it.
    ``sha256``: ``official`` checks the file against the checksum clip-anytorch ships for the
    official archive; a 64-hex string checks that value (e.g. for a converted state dict);
    ``null`` skips the check (the architecture is always verified).
    ``kind: tiny`` pretrains :class:`TinyClipConfig` on the train split's frames and captions.
    """

    kind: Literal["vit-b-32", "tiny"]
    path: Optional[str]
    sha256: Optional[str]
    tiny: TinyClipConfig

    def __post_init__(self) -> None:
        if self.sha256 is not None and self.sha256 != "official" and not _HEX64.match(self.sha256):
            raise ValueError(f"sha256 must be 'official', null or 64 lowercase hex digits, "
                             f"got {self.sha256!r}")
        if self.path is not None and not self.path.strip():
            raise ValueError("path must be null or a non-empty file path")
