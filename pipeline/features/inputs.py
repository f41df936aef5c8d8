"""The features stage's inputs, aligned: decoded videos, their captions, and their tags."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.frames.store import FrameStore
from pipeline.io import read_parquet
from pipeline.tags.table import MODALITIES, read_tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureInputs:
    """``videos``: video_id, row (0..V-1), split, frame_row (row in clip_frames.npy).
    ``captions``: caption_id, video_id, row (0..C-1), split, caption_index, text.
    ``visual_tags[v]`` / ``textual_tags[c]``: ordered tag lists aligned with those rows."""

    videos: pd.DataFrame
    captions: pd.DataFrame
    visual_tags: list[list[str]]
    textual_tags: list[list[str]]
    counts: dict[str, int]


def _unique(df: pd.DataFrame, column: str, where: str) -> None:
    dup = df[column][df[column].duplicated()]
    if len(dup):
        raise ValueError(f"{where}: duplicate {column} {dup.iloc[0]!r} ({len(dup)} duplicates)")


def load_tags(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """``{modality: {item_id: [tags...]}}`` from ``tags.parquet`` (see :func:`pipeline.tags.table.read_tags`)."""
    table = read_tags(path)
    return {"visual": table.visual, "textual": table.textual}


def _tags_for(ids: pd.Series, table: dict[str, list[str]], modality: str) -> tuple[list[list[str]], int]:
    missing = int((~ids.isin(table.keys())).sum())
    if missing:
        log.warning("%d %s items have no row in tags.parquet; they get the empty sentence "
                    "'a video of'", missing, modality)
    return [table.get(i, []) for i in ids], missing


def load_inputs(frames: FrameStore, videos_path: str | Path, captions_path: str | Path,
                tags_path: str | Path, tag_control: str = "real", seed: int = 0,
                oracle=None, aux_captions: dict[str, dict[str, list[str]]] | None = None) -> FeatureInputs:
    """Align the inputs. Videos the frames stage skipped, and their captions, are left out
    (counted in ``counts``); an item absent from ``tags.parquet`` has no tags (counted).
    ``tag_control`` replaces the real tags by a control (:mod:`pipeline.features.tag_control`);
    ``oracle(video_ids)`` gives the oracle's visual tags. ``aux_captions[modality]``: that
    modality's auxiliary captions, in place of its tags (paper Tab. 7); the control applies to
    whichever the model reads."""
    index_path = frames.path / "index.parquet"
    index = frames.index[["video_id", "row", "status"]]
    videos = read_parquet(videos_path, columns=["video_id", "split"])
    captions = read_parquet(captions_path, columns=["caption_id", "video_id", "split",
                                                    "caption_index", "text"])
    _unique(index, "video_id", str(index_path))
    _unique(videos, "video_id", str(videos_path))
    _unique(captions, "caption_id", str(captions_path))
    ok = index[index["status"] == "ok"].sort_values("row", kind="stable")
    unknown = ok[~ok["video_id"].isin(videos["video_id"])]
    if len(unknown):
        raise ValueError(f"{index_path}: video {unknown['video_id'].iloc[0]!r} is not in "
                         f"{videos_path} (frames and prepared tables are out of sync)")
    split = videos.set_index("video_id")["split"]
    table = pd.DataFrame({
        "video_id": ok["video_id"].to_numpy(),
        "row": np.arange(len(ok), dtype=np.int64),
        "split": split.loc[ok["video_id"]].to_numpy(),
        "frame_row": ok["row"].to_numpy().astype(np.int64),
    })
    kept = captions["video_id"].isin(table["video_id"])
    caps = captions[kept].reset_index(drop=True)
    caps.insert(2, "row", np.arange(len(caps), dtype=np.int64))
    caps["text"] = caps["text"].astype(str)
    tags = load_tags(tags_path)
    for modality, table_ in (aux_captions or {}).items():
        tags[modality] = table_
    visual, missing_v = _tags_for(table["video_id"], tags["visual"], "visual")
    textual, missing_t = _tags_for(caps["caption_id"], tags["textual"], "textual")
    if tag_control != "real":
        from pipeline.features.tag_control import controlled_tags

        visual, textual = controlled_tags(tag_control, list(table["video_id"]), list(table["split"]), visual,
                                          list(caps["caption_id"]), list(caps["split"]), textual, seed, oracle)
    counts = {"videos": len(table), "captions": len(caps),
              "videos_without_frames": int(len(videos) - len(table)),
              "captions_without_frames": int((~kept).sum()),
              "visual_items_without_tags": missing_v, "textual_items_without_tags": missing_t}
    if counts["videos_without_frames"]:
        log.warning("%d videos have no decoded frames (skipped by the frames stage); they and "
                    "their %d captions are left out", counts["videos_without_frames"],
                    counts["captions_without_frames"])
    return FeatureInputs(table, caps[["caption_id", "video_id", "row", "split", "caption_index", "text"]],
                         visual, textual, counts)
