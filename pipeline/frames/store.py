"""The frames directory format and :class:`FrameStore`, its reader.

Layout (written atomically by :func:`pipeline.frames.extract_frames`)::

    clip_frames.npy     uint8 [V, N_v, S, S, 3]  RGB; V = videos that decoded ("ok"), in
                        videos.parquet order; padded slots of short videos are zeros
    clip_mask.npy       bool  [V, N_v]           True = real frame
    vlm_frames.parquet  video_id, frame_index (0..n-1), source_index (frame in the video),
                        timestamp (s = source_index / fps), jpeg (binary); grouped by video,
                        videos in row order, one Parquet row group per VLM_GROUP_VIDEOS videos
    index.parquet       one row per input video, in videos.parquet order: video_id, row (into
                        clip_frames, -1 when skipped), split, status ("ok" | "skipped"),
                        error ("" when ok), source_frames (decodable frames, -1 if unknown),
                        frame_indices (list<int>: the CLIP frames' source indices)
    summary.json        counts ({"videos", "ok", "skipped", "padded", ...}) and how the frames
                        were made ({"num_frames", "image_size", "sampling", "sample_fps",
                        "padding"}): what later stages must know to encode them
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import load_npy, read_json, read_parquet

CLIP_FRAMES = "clip_frames.npy"
CLIP_MASK = "clip_mask.npy"
VLM_FRAMES = "vlm_frames.parquet"
INDEX = "index.parquet"
SUMMARY = "summary.json"
FILES = (CLIP_FRAMES, CLIP_MASK, VLM_FRAMES, INDEX, SUMMARY)
REQUIRED = (CLIP_FRAMES, CLIP_MASK, INDEX)  # what reading CLIP frames needs

#: How padded slots of short videos must be filled by an encoder (summary.json "padding"):
#: ``zero`` = all-zero features (masked out everywhere); ``blank`` = the backbone's embedding of
#: an all-zero normalised image, as the official loader produces (see pipeline.frames.extract).
PADDINGS = ("zero", "blank")

# ~8 JPEGs of <= 336 px per video: 64 videos make row groups of a few MiB, small enough to
# read one for a random lookup, large enough for efficient scans.
VLM_GROUP_VIDEOS = 64

VLM_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("frame_index", pa.int64()),
    ("source_index", pa.int64()),
    ("timestamp", pa.float64()),
    ("jpeg", pa.binary()),
])

INDEX_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("row", pa.int64()),
    ("split", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("source_frames", pa.int64()),
    ("frame_indices", pa.list_(pa.int64())),
])


class VlmFrame(NamedTuple):
    """One JPEG frame for the video LLM."""

    frame_index: int  # 0..n-1 within the video
    source_index: int  # frame number in the source video
    timestamp: float  # seconds
    jpeg: bytes


class FrameStore:
    """Read-only access to a frames directory: CLIP frames by memory map, VLM JPEGs by video.

    The one reader of the frames stage's output: every consumer (tiny pretraining, features,
    fine-tuning, evaluation re-encoding, search, report) goes through it.
    ``clip_frames``/``clip_mask`` cover the "ok" videos in ``video_ids`` order; ``row(video_id)``
    maps an id to its row; ``ok`` is the table (video_id, row, split) of those videos. Safe to
    share between threads.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        for name in REQUIRED:
            if not (self.path / name).exists():
                raise FileNotFoundError(f"{self.path / name}: not found (did the frames stage run?)")
        summary = self.path / SUMMARY
        self.summary = read_json(summary) if summary.exists() else {}
        self.index = read_parquet(self.path / INDEX)
        ok = self.index[self.index["status"] == "ok"].sort_values("row", kind="stable")
        self.ok = ok[["video_id", "row", "split"]].reset_index(drop=True)
        self.video_ids: list[str] = [str(v) for v in ok["video_id"]]
        self._rows = dict(zip(self.video_ids, ok["row"].astype(int)))
        self.clip_frames: np.ndarray = load_npy(self.path / CLIP_FRAMES, mmap_mode="r")
        self.clip_mask: np.ndarray = load_npy(self.path / CLIP_MASK, mmap_mode="r")
        if ok["row"].tolist() != list(range(len(ok))) or self.clip_frames.shape[0] != len(ok) \
                or self.clip_mask.shape != self.clip_frames.shape[:2]:
            raise ValueError(
                f"{self.path}: inconsistent frames dir ({len(ok)} ok videos in {INDEX}, "
                f"{CLIP_FRAMES} {self.clip_frames.shape}, {CLIP_MASK} {self.clip_mask.shape})"
            )
        if self.padding not in PADDINGS:
            raise ValueError(f"{self.path / SUMMARY}: unknown padding {self.padding!r} (expected {PADDINGS})")
        self._lock = threading.Lock()
        self._vlm_groups: dict[str, int] | None = None
        self._cached_group: tuple[int, dict[str, list[VlmFrame]]] | None = None

    @property
    def padding(self) -> str:
        """How encoders fill padded slots (``zero`` for directories written before it was recorded)."""
        return str(self.summary.get("padding", "zero"))

    def rows(self, video_ids) -> np.ndarray:
        """Rows of several ids (int64), with :meth:`row`'s error for the first unknown one."""
        return np.asarray([self.row(str(v)) for v in video_ids], dtype=np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.clip_frames.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.clip_frames.shape[2])

    def row(self, video_id: str) -> int:
        """Row of ``video_id`` in ``clip_frames``; KeyError naming the id (and why) if absent."""
        try:
            return self._rows[video_id]
        except KeyError:
            skipped = self.index[self.index["video_id"] == video_id]
            why = f"was skipped: {skipped['error'].iloc[0]}" if len(skipped) else "is not in the index"
            raise KeyError(f"{self.path}: video {video_id!r} {why}") from None

    def clip(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8 [N_v, S, S, 3], mask bool [N_v]) of one video (memory-mapped views)."""
        row = self.row(video_id)
        return self.clip_frames[row], self.clip_mask[row]

    def vlm_frames(self, video_id: str) -> list[VlmFrame]:
        """The video's VLM frames in order (``frame_index`` 0..n-1)."""
        self.row(video_id)  # clear error for skipped / unknown ids
        with self._lock:
            groups = self._group_of_video()
            group = groups[video_id]
            if self._cached_group is None or self._cached_group[0] != group:
                table = pq.ParquetFile(self.path / VLM_FRAMES).read_row_group(group)
                self._cached_group = (group, _by_video(table))
            return self._cached_group[1][video_id]

    def vlm_jpegs(self, video_id: str) -> list[bytes]:
        """The video's VLM JPEGs, in time order."""
        return [frame.jpeg for frame in self.vlm_frames(video_id)]

    def iter_vlm(self) -> Iterator[tuple[str, list[VlmFrame]]]:
        """Every ok video's VLM frames, streaming one row group at a time, in row order."""
        parquet = pq.ParquetFile(self.path / VLM_FRAMES)
        for group in range(parquet.metadata.num_row_groups):
            yield from _by_video(parquet.read_row_group(group)).items()

    def _group_of_video(self) -> dict[str, int]:
        if self._vlm_groups is None:
            parquet = pq.ParquetFile(self.path / VLM_FRAMES)
            groups: dict[str, int] = {}
            for group in range(parquet.metadata.num_row_groups):
                ids = parquet.read_row_group(group, columns=["video_id"]).column(0).to_pylist()
                groups.update(dict.fromkeys(ids, group))
            self._vlm_groups = groups
        return self._vlm_groups


def _by_video(table: pa.Table) -> dict[str, list[VlmFrame]]:
    """Group a VLM table's rows by video (insertion order), each sorted by frame_index."""
    out: dict[str, list[VlmFrame]] = {}
    columns = [table.column(name).to_pylist() for name in VLM_SCHEMA.names]
    for video_id, *rest in zip(*columns):
        out.setdefault(video_id, []).append(VlmFrame(*rest))
    for frames in out.values():
        frames.sort(key=lambda frame: frame.frame_index)
    return out
