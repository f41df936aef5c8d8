"""The features directory: fp16 memory-mappable ``.npy`` arrays with Parquet id indexes.

Layout (V videos, C captions, N_v frames per video, R training draws, D = CLIP width)::

    videos.parquet    video_id, row, split                  rows of the video arrays
    frames.npy        fp16 [V, N_v, D]   per-frame features, padded frames all zero
    frame_mask.npy    bool [V, N_v]      True = real frame
    captions.parquet  caption_id, video_id, row, split, caption_index
    captions.npy      fp16 [C, D]
    tags_visual_train.npy   fp16 [V, R, D]   R sentences of N random visual tags
    tags_textual_train.npy  fp16 [C, R, D]   R sentences of N random textual tags
    tags_visual_infer.npy   fp16 [V, D]      sentence of the first M visual tags
    tags_textual_infer.npy  fp16 [C, D]      sentence of the first M textual tags
    meta.json         N, M, R, seed, backbone checksum and architecture, counts

Features are CLIP's projected image-CLS / text-EOT embeddings, not L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import load_npy, read_json, read_parquet

FORMAT = "macvr-features"
VERSION = 1
VIDEOS = "videos.parquet"
CAPTIONS = "captions.parquet"
META = "meta.json"
ARRAYS = ("frames", "frame_mask", "captions", "tags_visual_train", "tags_textual_train",
          "tags_visual_infer", "tags_textual_infer")


@dataclass(frozen=True)
class FeatureStore:
    """A features directory opened for reading (arrays memory-mapped unless ``mmap=False``)."""

    videos: pd.DataFrame
    captions_index: pd.DataFrame
    frames: np.ndarray
    frame_mask: np.ndarray
    captions: np.ndarray
    tags_visual_train: np.ndarray
    tags_textual_train: np.ndarray
    tags_visual_infer: np.ndarray
    tags_textual_infer: np.ndarray
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.frames.shape[-1])

    @property
    def encoded(self) -> bool:
        """False for an index-only directory (``features.encode: false``: zero-width arrays)."""
        return bool(self.meta.get("encoded", True))

    def require_encoded(self, what: str) -> None:
        if not self.encoded:
            raise ValueError(f"{what}: the features directory holds no encoded features (features.encode: false); "
                             "only variants that re-encode items with their own backbone (a released checkpoint, "
                             "end-to-end fine-tuning) can use it; set features.encode: true")


def load_features(path: str | Path, mmap: bool = True) -> FeatureStore:
    """Open a features directory, checking every array against the indexes and ``meta.json``."""
    path = Path(path)
    meta_file = path / META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file}: not found (did the features stage run?)")
    meta = read_json(meta_file)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{meta_file}: not a {FORMAT} v{VERSION} directory")
    videos = read_parquet(path / VIDEOS)
    captions = read_parquet(path / CAPTIONS)
    arrays = {name: load_npy(path / f"{name}.npy", mmap_mode="r" if mmap else None) for name in ARRAYS}
    v, c, r, d, n_v = len(videos), len(captions), meta["train_tag_draws"], meta["dim"], meta["num_frames"]
    expected = {"frames": (v, n_v, d), "frame_mask": (v, n_v), "captions": (c, d),
                "tags_visual_train": (v, r, d), "tags_textual_train": (c, r, d),
                "tags_visual_infer": (v, d), "tags_textual_infer": (c, d)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"{path / name}.npy: shape {arrays[name].shape}, expected {shape}")
    for name in (frozenset(ARRAYS) - {"frame_mask"}):
        if arrays[name].dtype != np.float16:
            raise ValueError(f"{path / name}.npy: dtype {arrays[name].dtype}, expected float16")
    if not (np.array_equal(videos["row"], np.arange(v)) and np.array_equal(captions["row"], np.arange(c))):
        raise ValueError(f"{path}: index rows must be 0..n-1 in order")
    return FeatureStore(videos=videos, captions_index=captions, meta=meta, **arrays)
