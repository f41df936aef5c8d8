"""Typed configuration of the ``features`` stage (``params.yaml: features``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AuxiliaryInputs:
    """What MAC-VR reads as each modality's auxiliary input: its tags (the method) or auxiliary
    captions (paper Tab. 7, from the caption_video / caption_text stages). The two modalities
    switch independently."""

    visual: Literal["tags", "captions"]
    textual: Literal["tags", "captions"]

    def __post_init__(self) -> None:
        for name in ("visual", "textual"):
            if getattr(self, name) not in ("tags", "captions"):
                raise ValueError(f"features.auxiliary.{name} must be tags or captions, "
                                 f"got {getattr(self, name)!r}")

    def of(self, modality: str) -> str:
        return getattr(self, modality)

    @property
    def any_captions(self) -> bool:
        return "captions" in (self.visual, self.textual)


@dataclass(frozen=True)
class FeaturesConfig:
    """Frozen-CLIP feature extraction.

    ``batch_size``: images (frames) or texts per forward pass. ``device``: ``auto`` takes CUDA
    when available. ``torch_threads``: intra-op CPU threads (0 = PyTorch's default). Tag sentences: ``train_tag_draws`` (R) random draws of
    ``train_tags_per_draw`` (N) tags per item for training, the first ``infer_tags`` (M) tags
    for inference; ``seed`` fixes the draws (per item, independent of row order).
    ``encode``: false writes only the index (ids, splits, frame masks, meta) with zero-width
    arrays: enough for variants that re-encode items with their own backbone (released
    checkpoints, end-to-end fine-tuning), and no encoding work (a CPU box evaluating released
    checkpoints); cached-mode variants refuse such a directory.
    ``tag_control``: ``real`` (the taggers' tags), or a control that checks the tag pathway:
    ``shuffled`` (each item gets another item's tags) or ``oracle`` (visual tags from the
    synthetic scene's true facts); see :mod:`pipeline.features.controls`.
    ``auxiliary``: per modality, tags or auxiliary captions (:class:`AuxiliaryInputs`).
    """

    encode: bool
    batch_size: int
    device: Literal["cpu", "cuda", "auto"]
    torch_threads: int
    train_tag_draws: int
    train_tags_per_draw: int
    infer_tags: int
    seed: int
    tag_control: Literal["real", "shuffled", "oracle"]
    auxiliary: AuxiliaryInputs

    def __post_init__(self) -> None:
        for name in ("batch_size", "train_tag_draws", "train_tags_per_draw", "infer_tags"):
            if getattr(self, name) < 1:
                raise ValueError(f"features.{name} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads < 0:
            raise ValueError(f"features.torch_threads must be >= 0, got {self.torch_threads}")
        if self.tag_control not in ("real", "shuffled", "oracle"):
            raise ValueError(f"features.tag_control must be real, shuffled or oracle, got {self.tag_control!r}")
        if self.tag_control == "oracle" and self.auxiliary.visual == "captions":
            raise ValueError("features.tag_control: oracle replaces the visual tags; it cannot be "
                             "combined with features.auxiliary.visual: captions")
        if self.seed < 0:
            raise ValueError(f"features.seed must be >= 0, got {self.seed}")
