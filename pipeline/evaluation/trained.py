"""A trained model ready to score items: the one loader used by evaluate, report and search.

A head trained on cached features scores the features directory's arrays as they are; a head
trained end to end (finetune mode) expects features from the backbone it was trained with, so
its items are re-encoded by that backbone -- frames from the frames stage, texts from
``captions.parquet``, tags from ``tags.parquet`` with the inference tag sentence built exactly as
the features stage builds it (the first M tags, M = the features' ``infer_tags``), texts cut to
the run's ``text.max_words`` and padded frame slots filled as the frames directory records.
:class:`TrainedModel` hides that decision: callers ask for text and video sets by row/id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.evaluation.sets import RowView, TextSet, VideoSet
from pipeline.features.store import FeatureStore
from pipeline.model import MacVR
from pipeline.tags.sentences import infer_sentence
from pipeline.train import checkpoint as ckpt

log = logging.getLogger(__name__)


class ScoringInputError(ValueError):
    """The inputs a trained model needs to score items are missing or do not fit it."""


@dataclass
class ItemSources:
    """Where a finetune-mode model re-encodes items from (unused by cached-mode models)."""

    frames: Path | None = None
    captions: Path | None = None
    tags: Path | None = None
    batch_size: int = 64
    _cache: dict[str, Any] = field(default_factory=dict)

    def frame_store(self):
        if "frames" not in self._cache:
            from pipeline.frames.store import FrameStore

            self._cache["frames"] = FrameStore(self.frames)
        return self._cache["frames"]

    def texts(self) -> dict[str, str]:
        if "texts" not in self._cache:
            from pipeline.io import read_parquet

            df = read_parquet(self.captions, columns=["caption_id", "text"])
            self._cache["texts"] = dict(zip(df["caption_id"].astype(str), df["text"].astype(str)))
        return self._cache["texts"]

    def tag_table(self):
        if "tags" not in self._cache:
            from pipeline.tags.table import read_tags

            self._cache["tags"] = read_tags(self.tags)
        return self._cache["tags"]


@dataclass
class TrainedModel:
    """A checkpoint loaded once: the head, and the fine-tuned backbone when there is one."""

    path: Path
    variant: str
    head: MacVR
    backbone: Any | None     # the fine-tuned Backbone (finetune mode); None: cached features
    max_words: int
    padding: str
    train_mode: str
    run: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TrainedModel":
        path = Path(path)
        data = ckpt.load(path)
        run = data.get("run", {})
        return cls(path=path, variant=str(data["variant"]), head=ckpt.head_from(data, str(path), device),
                   backbone=ckpt.backbone_from(data, str(path), device),
                   max_words=int(run.get("text", {}).get("max_words", 32)),
                   padding=str(run.get("padding", "zero")), train_mode=str(run.get("train", {}).get("mode", "cached")),
                   run=run)

    @property
    def finetuned(self) -> bool:
        return self.backbone is not None

    @property
    def config(self):
        return self.head.config

    def check_features(self, store: FeatureStore) -> None:
        """The head must fit the features it is scored on."""
        cfg = self.config
        if self.finetuned:  # items are re-encoded by its own backbone: only the frame slots must fit
            if int(store.frames.shape[1]) > cfg.max_frames:
                raise ScoringInputError(f"{self.path}: the head has {cfg.max_frames} frame positions, the frames "
                                        f"have {store.frames.shape[1]} slots")
            return
        if not store.encoded:
            raise ScoringInputError(f"{self.path} scores cached features, but the features directory holds none "
                                    "(features.encode: false); set features.encode: true")
        if cfg.embed_dim != store.dim:
            raise ScoringInputError(f"{self.path}: the head takes {cfg.embed_dim}-d features, the features are "
                                    f"{store.dim}-d")
        if int(store.frames.shape[1]) > cfg.max_frames:
            raise ScoringInputError(f"{self.path}: the head has {cfg.max_frames} frame positions, the features "
                                    f"have {store.frames.shape[1]} frame slots")

    def text_backbone(self, frozen: str | Path | None, store: FeatureStore, device: str | torch.device = "cpu"):
        """The backbone that encodes new query texts: the fine-tuned one, or the frozen backbone
        that encoded ``store`` (checked by checksum)."""
        if self.backbone is not None:
            return self.backbone
        if frozen is None:
            raise ScoringInputError("a cached-features model needs the frozen backbone (--backbone) to encode queries")
        from pipeline.backbone.io import file_sha256, load_backbone

        want = store.meta.get("backbone_sha256")
        if want is not None and Path(frozen).is_file() and file_sha256(frozen) != want:
            raise ScoringInputError(f"{frozen} is not the backbone that encoded the features (their meta.json names "
                                    f"backbone sha256 {want[:12]}...); pass the backbone the features stage used")
        return load_backbone(frozen, device)

    # ------------------------------------------------------------------ item sets
    def _need(self, sources: ItemSources, what: str, *names: str) -> None:
        missing = [f"--{n}" for n in names if getattr(sources, n) is None]
        if missing:
            raise ScoringInputError(f"{self.path} was fine-tuned end to end: its backbone re-encodes the {what}, "
                                    f"which needs {', '.join(missing)}")

    def text_set(self, store: FeatureStore, rows: np.ndarray, ids: list[str], sources: ItemSources,
                 name: str = "captions") -> TextSet:
        """Caption features (+ textual tag sentences) of caption rows/ids of ``store``."""
        if not self.finetuned:
            return TextSet(RowView(store.captions, rows), RowView(store.tags_textual_infer, rows))
        from pipeline.backbone.encode import encode_text_array

        self._need(sources, name, "captions", *(["tags"] if self.config.use_textual_tags else []))
        texts = sources.texts()
        missing = [i for i in ids if i not in texts]
        if missing:
            raise ScoringInputError(f"{sources.captions}: no text for {len(missing)} items (e.g. {missing[0]!r}); "
                                    "the captions do not match the features directory")
        feats, _ = encode_text_array(self.backbone, [texts[i] for i in ids], self.max_words, sources.batch_size,
                                     f"{name}", progress=True, dtype=np.float32)
        tags = None
        if self.config.use_textual_tags:
            m = int(store.meta["infer_tags"])
            sentences = [infer_sentence(t, m) for t in sources.tag_table().lists("textual", ids)]
            tags, _ = encode_text_array(self.backbone, sentences, self.max_words, sources.batch_size, f"{name} tags",
                                        progress=True, dtype=np.float32)
        return TextSet(feats, tags)

    def video_set(self, store: FeatureStore, rows: np.ndarray, ids: list[str], sources: ItemSources,
                  name: str = "videos") -> VideoSet:
        """Frame features, masks (+ visual tag sentences) of video rows/ids of ``store``."""
        if not self.finetuned:
            return VideoSet(RowView(store.frames, rows), RowView(store.frame_mask, rows),
                            RowView(store.tags_visual_infer, rows))
        from pipeline.backbone.encode import encode_text_array, encode_video_array

        self._need(sources, name, "frames", *(["tags"] if self.config.use_visual_tags else []))
        frames = sources.frame_store()
        try:
            frame_rows = frames.rows(ids)
        except KeyError as err:
            raise ScoringInputError(str(err)) from None
        feats, masks = encode_video_array(self.backbone, frames.clip_frames, frames.clip_mask, frame_rows,
                                          frames.padding, sources.batch_size, f"{name} frames", progress=True,
                                          dtype=np.float32)
        tags = None
        if self.config.use_visual_tags:
            m = int(store.meta["infer_tags"])
            sentences = [infer_sentence(t, m) for t in sources.tag_table().lists("visual", ids)]
            tags, _ = encode_text_array(self.backbone, sentences, self.max_words, sources.batch_size, f"{name} tags",
                                        progress=True, dtype=np.float32)
        return VideoSet(feats, masks, tags)
