"""Which items are scored: the test gallery, its queries, and the QB-Norm querybanks.

Rows refer to the features directory's arrays (``videos.parquet`` / ``captions.parquet`` rows).

- Test videos: split ``test``, in row order. A test video without any test caption cannot be a
  video-to-text query (it has no ground truth), so it is left out of the gallery with a warning.
- Test captions: split ``test`` captions of those videos, in row order; ``caption_video`` gives
  each one's column in the gallery (several captions may share a video).
- t2v querybank (QB-Norm, text queries): the first caption (lowest ``caption_index``) of each
  training video, as in the official MAC-VR / DiCoSA evaluation.
- v2t querybank (video queries): the training videos themselves.
Training videos are taken in row order; ``querybank_size > 0`` keeps the first that many.

The validation split (``split="val"``) is scored the same way, with the same querybanks: it is
what choices (recipes, epochs, checkpoints) are made on, so the test split is only reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRows:
    test_videos: np.ndarray    # int64 [V] video rows (gallery columns, in order)
    test_captions: np.ndarray  # int64 [C] caption rows (similarity rows, in order)
    caption_video: np.ndarray  # int64 [C] gallery column of each test caption's video
    qb_captions: np.ndarray    # int64 [M] caption rows of the t2v querybank
    qb_videos: np.ndarray      # int64 [M_v] video rows of the v2t querybank
    video_ids: list[str]       # [V]
    caption_ids: list[str]     # [C]
    qb_caption_ids: list[str]  # [M]
    qb_caption_videos: list[str]  # [M] the training video of each t2v querybank caption
    qb_video_ids: list[str]    # [M_v]


def _check_index(df: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing columns {missing}")


def has_split(videos: pd.DataFrame, captions: pd.DataFrame, split: str) -> bool:
    """Whether ``split`` has a video with a caption (e.g. a validation split to report)."""
    ids = set(videos.loc[videos["split"] == split, "video_id"])
    return bool(ids) and bool(captions.loc[captions["split"] == split, "video_id"].isin(ids).any())


def select_rows(videos: pd.DataFrame, captions: pd.DataFrame, querybank_size: int,
                where: str = "features", split: str = "test") -> EvalRows:
    """The ``split`` gallery and queries (test by default) and the querybanks, from the features'
    two index tables."""
    _check_index(videos, ["video_id", "row", "split"], f"{where}/videos.parquet")
    _check_index(captions, ["caption_id", "video_id", "row", "split", "caption_index"], f"{where}/captions.parquet")
    videos = videos.sort_values("row", kind="stable")
    captions = captions.sort_values("row", kind="stable")

    test_v = videos[videos["split"] == split]
    test_c = captions[(captions["split"] == split) & captions["video_id"].isin(test_v["video_id"])]
    if test_c.empty:
        raise ValueError(f"{where}: no {split} captions with a {split} video (is there a {split} split?)")
    without = ~test_v["video_id"].isin(test_c["video_id"])
    if without.any():
        log.warning("%s: %d %s videos have no %s caption (e.g. %r); left out of the gallery",
                    where, int(without.sum()), split, split, test_v.loc[without, "video_id"].iloc[0])
        test_v = test_v[~without]
    column = pd.Series(np.arange(len(test_v), dtype=np.int64), index=test_v["video_id"].to_numpy())

    train_v = videos[videos["split"] == "train"]
    if querybank_size:
        train_v = train_v.iloc[:querybank_size]
    train_c = captions[(captions["split"] == "train") & captions["video_id"].isin(train_v["video_id"])]
    # First caption per video: lowest caption_index, then lowest row; listed in video row order.
    first = (train_c.sort_values(["caption_index", "row"], kind="stable")
             .drop_duplicates("video_id", keep="first").set_index("video_id"))
    first = first.loc[[v for v in train_v["video_id"] if v in first.index]]
    if train_v.empty:
        log.warning("%s: no training videos; QB-Norm ('qb') is not evaluated", where)

    return EvalRows(
        test_videos=test_v["row"].to_numpy(dtype=np.int64),
        test_captions=test_c["row"].to_numpy(dtype=np.int64),
        caption_video=column.loc[test_c["video_id"].to_numpy()].to_numpy(dtype=np.int64),
        qb_captions=first["row"].to_numpy(dtype=np.int64),
        qb_videos=train_v["row"].to_numpy(dtype=np.int64),
        video_ids=[str(v) for v in test_v["video_id"]],
        caption_ids=[str(c) for c in test_c["caption_id"]],
        qb_caption_ids=[str(c) for c in first["caption_id"]],
        qb_caption_videos=[str(v) for v in first.index],
        qb_video_ids=[str(v) for v in train_v["video_id"]],
    )
