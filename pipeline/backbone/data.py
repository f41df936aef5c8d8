"""Frames + captions of one split, as the backbone pretraining and its evaluation need them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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


def load_video_text_set(frames_dir: str | Path, captions_path: str | Path, split: str,
                        tags_path: str | Path | None = None) -> VideoTextSet:
    """The ``split`` videos the frames stage decoded (status ok) that have captions (and, with
    ``tags_path``, each caption's textual and each video's visual tags from ``tags.parquet``;
    missing ones are empty).

    Frames are read from the memory-mapped ``clip_frames.npy`` and copied into RAM: this is
    meant for the small synthetic set the tiny backbone is pretrained on.
    """
    frames_dir = Path(frames_dir)
    index = read_parquet(frames_dir / "index.parquet", columns=["video_id", "row", "split", "status"])
    captions = read_parquet(captions_path, columns=["caption_id", "video_id", "split", "text"])
    ok = index[(index["split"] == split) & (index["status"] == "ok")]
    caps = captions[captions["split"] == split]
    have_caps = set(caps["video_id"])
    no_caps = ok[~ok["video_id"].isin(have_caps)]
    if len(no_caps):
        log.warning("%d %s videos have no captions; left out", len(no_caps), split)
    ok = ok[ok["video_id"].isin(have_caps)].sort_values("row", kind="stable")
    if ok.empty:
        raise ValueError(f"{frames_dir / 'index.parquet'}: no decoded '{split}' videos with "
                         f"captions in {captions_path}")
    if (ok["row"] < 0).any():
        raise ValueError(f"{frames_dir / 'index.parquet'}: status 'ok' rows with row < 0")
    position = pd.Series(np.arange(len(ok)), index=ok["video_id"].to_numpy())
    caps = caps[caps["video_id"].isin(position.index)]
    dropped = (captions["split"] == split).sum() - len(caps)
    if dropped:
        log.warning("%d %s captions belong to videos without frames; left out", dropped, split)
    rows = ok["row"].to_numpy()
    frames = np.load(frames_dir / "clip_frames.npy", mmap_mode="r")
    mask = np.load(frames_dir / "clip_mask.npy", mmap_mode="r")
    if rows.max() >= len(frames) or len(mask) != len(frames):
        raise ValueError(f"{frames_dir}: index rows exceed clip_frames.npy ({len(frames)} rows) "
                         f"or clip_mask.npy has {len(mask)} rows")
    caption_tags = video_tags = None
    if tags_path is not None:
        from pipeline.features.inputs import load_tags

        tables = load_tags(tags_path)
        caption_tags = [tables["textual"].get(c, []) for c in caps["caption_id"]]
        video_tags = [tables["visual"].get(v, []) for v in ok["video_id"]]
    return VideoTextSet(
        caption_ids=caps["caption_id"].astype(str).tolist(),
        caption_tags=caption_tags,
        video_tags=video_tags,
        video_ids=ok["video_id"].tolist(),
        frames=np.ascontiguousarray(frames[rows]),
        mask=np.asarray(mask[rows], dtype=bool),
        captions=caps["text"].astype(str).tolist(),
        caption_video=position.loc[caps["video_id"]].to_numpy().astype(np.int64),
    )
