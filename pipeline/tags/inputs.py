"""Reading the taggers' inputs: captions, and the VLM frames grouped per video.

``vlm_frames.parquet`` is read in record batches, one video at a time, so memory stays bounded
by a batch plus one video's JPEGs whatever the dataset size. The frames stage writes each
video's rows contiguously; anything else is refused with the offending video named.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.io import read_parquet

FRAME_COLUMNS = ["video_id", "frame_index", "jpeg"]


@dataclass(frozen=True)
class Caption:
    item_id: str
    text: str


@dataclass(frozen=True)
class VideoFrames:
    item_id: str
    jpegs: list[bytes]  # in frame_index order


def read_captions(path: str | Path) -> list[Caption]:
    """All captions (caption_id, text) in file order."""
    df = read_parquet(path, columns=["caption_id", "text"])
    if df["caption_id"].duplicated().any():
        dup = df.loc[df["caption_id"].duplicated(), "caption_id"].iloc[0]
        raise ValueError(f"{path}: duplicate caption_id {dup!r}")
    empty = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(f"{path}: caption {df.loc[empty, 'caption_id'].iloc[0]!r} has no text")
    return [Caption(str(i), str(t)) for i, t in zip(df["caption_id"], df["text"])]


def _open_frames(path: str | Path) -> pq.ParquetFile:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (did the frames stage run?)")
    pf = pq.ParquetFile(path)
    missing = [c for c in FRAME_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: not a VLM frames file (missing columns {missing})")
    return pf


def count_videos(path: str | Path) -> int:
    """Number of distinct videos (reads only the id column)."""
    table = _open_frames(path).read(columns=["video_id"])
    return len(pc.unique(table["video_id"]))


def _finish(path: Path | str, video_id: str, rows: list[tuple[int, bytes]]) -> VideoFrames:
    rows.sort(key=lambda r: r[0])
    indices = [r[0] for r in rows]
    if indices != list(range(len(rows))):
        raise ValueError(f"{path}: video {video_id!r} has frame_index {indices}, expected 0..{len(rows) - 1}")
    return VideoFrames(video_id, [r[1] for r in rows])


def iter_video_frames(path: str | Path, batch_rows: int = 512) -> Iterator[VideoFrames]:
    """Yield each video's JPEG frames in file order of videos, frame_index order within."""
    pf = _open_frames(path)
    seen: set[str] = set()
    current: str | None = None
    rows: list[tuple[int, bytes]] = []
    for batch in pf.iter_batches(batch_size=batch_rows, columns=FRAME_COLUMNS):
        for vid, idx, jpeg in zip(*(batch.column(c).to_pylist() for c in FRAME_COLUMNS)):
            if vid != current:
                if current is not None:
                    yield _finish(path, current, rows)
                if vid in seen:
                    raise ValueError(f"{path}: rows of video {vid!r} are not contiguous")
                seen.add(vid)
                current, rows = vid, []
            if not jpeg:
                raise ValueError(f"{path}: video {vid!r} frame {idx} has an empty JPEG")
            rows.append((int(idx), bytes(jpeg)))
    if current is not None:
        yield _finish(path, current, rows)
