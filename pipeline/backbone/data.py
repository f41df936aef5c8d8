"""Frames + captions of one split, as the backbone pretraining and its evaluation need them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.frames.store import FrameStore
from pipeline.io import read_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoTextSet:
    """Videos (frames in RAM) and their captions. ``caption_video[c]`` indexes ``video_ids``."""

    video_ids: list[str]
    frames: np.ndarray          # uint8 [V, N_v, S, S, 3]
    mask: np.ndarray            # bool [V, N_v], True = real frame
    captions: list[str]
    caption_video: np.ndarray   # int64 [C]
    caption_ids: list[str] | None = None
    caption_tags: list[list[str]] | None = None  # textual tags per caption (tag_text_weight)
    video_tags: list[list[str]] | None = None    # visual tags per video (tag_visual_weight)

    def captions_of(self) -> list[np.ndarray]:
        """Caption indices per video (every video here has at least one)."""
        order = np.argsort(self.caption_video, kind="stable")
        bounds = np.searchsorted(self.caption_video[order], np.arange(len(self.video_ids) + 1))
        return [order[bounds[v]: bounds[v + 1]] for v in range(len(self.video_ids))]


def load_video_text_set(frames_dir: str | Path, captions_path: str | Path, split: str) -> VideoTextSet:
    """The ``split`` videos the frames stage decoded (status ok) that have captions (tags:
    :func:`pipeline.backbone.tag_terms.with_tags`).

    Frames are copied from the memory-mapped store into RAM: this is meant for the small
    synthetic set the tiny backbone is pretrained on.
    """
    store = FrameStore(frames_dir)
    captions = read_parquet(captions_path, columns=["caption_id", "video_id", "split", "text"])
    ok = store.ok[store.ok["split"] == split]
    caps = captions[captions["split"] == split]
    have_caps = set(caps["video_id"])
    no_caps = ok[~ok["video_id"].isin(have_caps)]
    if len(no_caps):
        log.warning("%d %s videos have no captions; left out", len(no_caps), split)
    ok = ok[ok["video_id"].isin(have_caps)]
    if ok.empty:
        raise ValueError(f"{store.path}: no decoded '{split}' videos with captions in {captions_path}")
    position = pd.Series(np.arange(len(ok)), index=ok["video_id"].to_numpy())
    caps = caps[caps["video_id"].isin(position.index)]
    dropped = (captions["split"] == split).sum() - len(caps)
    if dropped:
        log.warning("%d %s captions belong to videos without frames; left out", dropped, split)
    rows = ok["row"].to_numpy()
    return VideoTextSet(
        caption_ids=caps["caption_id"].astype(str).tolist(),
        video_ids=ok["video_id"].tolist(),
        frames=np.ascontiguousarray(store.clip_frames[rows]),
        mask=np.asarray(store.clip_mask[rows], dtype=bool),
        captions=caps["text"].astype(str).tolist(),
        caption_video=position.loc[caps["video_id"]].to_numpy().astype(np.int64),
    )
