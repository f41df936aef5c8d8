"""The frames stage: sample, decode and store the CLIP frames and the VLM JPEGs of every video.

Videos are processed by a thread pool: decord and Pillow release the GIL while decoding,
resizing and encoding, so threads scale like processes (measured on 2 cores: 8 x 30 s 320x240
clips 2.47 s serial, 1.27 s with 2 threads, 1.48 s with 2 spawned processes) without pickling
frames between processes. With several workers each decoder runs single-threaded (the pool
is the parallelism); with one worker FFmpeg may thread inside the decoder.

Results are consumed in input order through a bounded window of in-flight videos, so memory
stays at a few videos' frames whatever the dataset size, and rows are written as they come:
CLIP frames into a .npy memory map, VLM JPEGs into Parquet row groups. Everything is written
inside a temporary directory that replaces ``out_dir`` only on success.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.frames.decode import VideoReadError, open_video, read_frames, video_fps
from pipeline.frames.sampling import fps_indices, timestamps, uniform_indices
from pipeline.frames.store import (
    CLIP_FRAMES,
    CLIP_MASK,
    INDEX,
    INDEX_SCHEMA,
    SUMMARY,
    VLM_FRAMES,
    VLM_GROUP_VIDEOS,
    VLM_SCHEMA,
)
from pipeline.frames.transforms import clip_frame, vlm_jpeg
from pipeline.io import atomic_dir, atomic_path, load_npy, open_npy_writer, write_json, write_npy, write_parquet
from pipeline.parallel import ordered_map
from pipeline.sharding import Shard, block, run_sharded

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video_id", "path", "split")


class FramesError(RuntimeError):
    """The frames stage cannot produce its output (a video failed with on_error=raise, or all did)."""


@dataclass(frozen=True)
class FramesConfig:
    """``frames`` section of params.yaml."""

    # uniform: N segment centres over the clip; fps: the official loader (sample_fps frames per
    # second, uniformly subsampled to N, shorter clips padded). See pipeline.frames.sampling.
    sampling: Literal["uniform", "fps"]
    sample_fps: float  # frames per second taken by the fps mode (official: 1)
    # fps mode: how fps / sample_fps becomes a frame stride -- round (the official decord loader,
    # MSR-VTT) or floor (the official cv2 loader, DiDeMo / ActivityNet) -- and the seconds read
    # from the start (null = all; the official DiDeMo loader reads 32: seconds 0..31).
    fps_stride: Literal["round", "floor"]
    max_seconds: Optional[float]
    num_frames: int  # N_v CLIP frames per video (12 MSR-VTT/synthetic, 50 paragraph datasets)
    image_size: int  # S: the backbone's input side (64 tiny synthetic CLIP, 224 ViT-B/32)
    # How encoders fill the padded slots of short videos (recorded in summary.json for the
    # features stage, fine-tuning and re-encoding): zero (all-zero features, the default) or
    # blank (the backbone's embedding of an all-zero normalised image, as the official loader).
    padding: Literal["zero", "blank"]
    # JPEG frames for the video LLM. Qwen2/2.5-VL need an even count: keep it even for them
    # (not enforced here: other video LLMs do not care, and videos shorter than this many
    # frames give fewer JPEGs anyway).
    vlm_num_frames: int
    vlm_max_side: int  # longer side of the VLM JPEGs in px (never upscaled)
    jpeg_quality: int  # Pillow JPEG quality, 1..95 (above 95 only grows files)
    workers: int  # videos decoded in parallel (threads)
    on_error: Literal["raise", "skip"]  # a bad video stops the stage, or is recorded and skipped

    def __post_init__(self) -> None:
        for name in ("num_frames", "image_size", "vlm_num_frames", "vlm_max_side", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"frames.{name} must be an integer >= 1, got {value!r}")
        quality = self.jpeg_quality
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ValueError(f"frames.jpeg_quality must be an integer in 1..95, got {quality!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"frames.on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.sampling not in ("uniform", "fps"):
            raise ValueError(f"frames.sampling must be 'uniform' or 'fps', got {self.sampling!r}")
        if not self.sample_fps > 0:
            raise ValueError(f"frames.sample_fps must be > 0, got {self.sample_fps}")
        if self.fps_stride not in ("round", "floor"):
            raise ValueError(f"frames.fps_stride must be 'round' or 'floor', got {self.fps_stride!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"frames.max_seconds must be null or > 0, got {self.max_seconds}")
        if self.padding not in ("zero", "blank"):
            raise ValueError(f"frames.padding must be 'zero' or 'blank', got {self.padding!r}")

    def clip_indices(self, num_source: int, fps: float) -> list[int]:
        """Which source frames become the CLIP frames of a video (see pipeline.frames.sampling)."""
        if self.sampling == "fps":
            return fps_indices(num_source, fps, self.sample_fps, self.num_frames, self.fps_stride, self.max_seconds)
        return uniform_indices(num_source, self.num_frames)


@dataclass
class VideoFrames:
    """What one video contributes (or why it contributes nothing)."""

    error: str = ""
    source_frames: int = -1
    clip_indices: list[int] = field(default_factory=list)
    clip: np.ndarray | None = None  # uint8 [len(clip_indices), S, S, 3]
    vlm: list[tuple[int, float, bytes]] = field(default_factory=list)  # (source index, s, JPEG)


def process_video(path: Path, config: FramesConfig, decode_threads: int = 0) -> VideoFrames:
    """Sample, decode and transform one video; a :class:`VideoReadError` becomes ``error``."""
    try:
        reader = open_video(path, decode_threads)
        total = len(reader)
        fps = video_fps(reader, path)
        clip_indices = config.clip_indices(total, fps)
        vlm_indices = uniform_indices(total, config.vlm_num_frames)
        clip_slot = {index: k for k, index in enumerate(clip_indices)}
        vlm_slot = {index: k for k, index in enumerate(vlm_indices)}
        clip = np.zeros((len(clip_indices), config.image_size, config.image_size, 3), np.uint8)
        jpegs: list[bytes] = [b""] * len(vlm_indices)
        for index, frame in read_frames(reader, sorted(clip_slot.keys() | vlm_slot.keys()), path):
            if index in clip_slot:
                clip[clip_slot[index]] = clip_frame(frame, config.image_size)
            if index in vlm_slot:
                jpegs[vlm_slot[index]] = vlm_jpeg(frame, config.vlm_max_side, config.jpeg_quality)
    except VideoReadError as err:
        return VideoFrames(error=str(err))
    vlm = list(zip(vlm_indices, timestamps(vlm_indices, fps), jpegs))
    return VideoFrames(source_frames=total, clip_indices=clip_indices, clip=clip, vlm=vlm)


def extract_frames(
    config: FramesConfig, videos_df: pd.DataFrame, out_dir: str | Path, root: str | Path = ".",
    shard: Shard | None = None,
) -> dict[str, Any] | None:
    """Write the frames directory ``out_dir`` for ``videos_df`` (see :mod:`pipeline.frames.store`).

    ``videos_df`` needs video_id, path and split; relative paths are resolved against ``root``
    (the repository root). Returns the summary also written to ``summary.json``. Raises
    :class:`FramesError` when a video fails and ``on_error`` is "raise" (the message names the
    file and the cause), or when no video succeeds; nothing is left at or beside ``out_dir``
    then (a previous ``out_dir`` stays as it was).

    ``shard`` (under torchrun, see :mod:`pipeline.sharding`): this worker decodes a contiguous
    block of the videos into a part directory and rank 0 merges the parts through the same writer
    a single process uses, so the directory is byte-identical; other ranks return None.
    """
    videos = _checked_videos(videos_df)
    if shard is None or not shard.distributed:
        return _extract(config, videos, Path(out_dir), root)
    rows = block(len(videos), shard)

    def work(part: Path) -> None:
        _extract(config, videos.iloc[rows.start:rows.stop].reset_index(drop=True), part, root, allow_empty=True)

    return run_sharded(shard, out_dir, work, lambda parts: merge_parts(parts, Path(out_dir), config))


def _extract(config: FramesConfig, videos: pd.DataFrame, out_dir: Path, root: str | Path,
             allow_empty: bool = False) -> dict[str, Any]:
    paths = [p if p.is_absolute() else Path(root) / p for p in map(Path, videos["path"])]
    decode_threads = 0 if config.workers == 1 else 1

    def work(path: Path) -> VideoFrames:
        try:
            return process_video(path, config, decode_threads)
        except Exception as err:  # not a bad-video error (those are returned): a bug or resources
            raise FramesError(f"{path}: unexpected {type(err).__name__}: {err}") from err

    with atomic_dir(out_dir) as tmp, _FramesWriter(tmp, len(videos), config, allow_empty) as writer:
        results = _ordered_map(work, paths, config.workers)
        with contextlib.closing(results), tqdm(total=len(videos), desc="frames", unit="video") as bar:
            for video, result in zip(videos.itertuples(index=False), results):
                if result.error and config.on_error == "raise":
                    raise FramesError(f"video {video.video_id!r}: {result.error}")
                if result.error:
                    log.warning("skipping video %r: %s", video.video_id, result.error)
                writer.add(str(video.video_id), str(video.split), result)
                bar.update()
        return writer.finish()


def merge_parts(parts: list[Path], out_dir: Path, config: FramesConfig) -> dict[str, Any]:
    """The frames directory of all videos from the workers' part directories (in rank order),
    written by the same writer, in the same order, as a single process would."""
    from pipeline.frames.store import FrameStore

    stores = [FrameStore(p) for p in parts]
    total = sum(len(s.index) for s in stores)
    with atomic_dir(out_dir) as tmp, _FramesWriter(tmp, total, config) as writer:
        for store in stores:
            vlm = {vid: frames for vid, frames in store.iter_vlm()}
            for row in store.index.itertuples(index=False):
                indices = [int(i) for i in row.frame_indices]
                if row.status == "ok":
                    clip, _ = store.clip(row.video_id)
                    result = VideoFrames(source_frames=int(row.source_frames), clip_indices=indices,
                                         clip=np.asarray(clip[: len(indices)]),
                                         vlm=[(f.source_index, f.timestamp, f.jpeg) for f in vlm.get(row.video_id, [])])
                else:
                    result = VideoFrames(error=str(row.error), source_frames=int(row.source_frames))
                writer.add(str(row.video_id), str(row.split), result)
        return writer.finish()


class _FramesWriter:
    """Fills the files of a (temporary) frames directory video by video, in input order."""

    def __init__(self, directory: Path, num_videos: int, config: FramesConfig, allow_empty: bool = False):
        self.allow_empty = allow_empty
        self.directory, self.num_videos = directory, num_videos
        self.num_frames, self.size = config.num_frames, config.image_size
        self.sampling, self.sample_fps, self.padding = config.sampling, config.sample_fps, config.padding
        self.fps_stride, self.max_seconds = config.fps_stride, config.max_seconds
        # Sized for every video; if some are skipped the unused tail is cut off in finish().
        shape = (num_videos, self.num_frames, self.size, self.size, 3)
        self.clip = open_npy_writer(directory / CLIP_FRAMES, shape, np.uint8)
        self.mask = np.zeros((num_videos, self.num_frames), dtype=bool)
        self.vlm = pq.ParquetWriter(directory / VLM_FRAMES, VLM_SCHEMA, compression="none")
        self.vlm_rows: list[tuple[str, int, int, float, bytes]] = []
        self.index_rows: list[dict[str, Any]] = []
        self.ok = self.padded = self.vlm_frames = self.vlm_bytes = 0

    def __enter__(self) -> _FramesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.vlm.close()  # idempotent; on failure the directory is discarded anyway
        self.clip = None

    def add(self, video_id: str, split: str, result: VideoFrames) -> None:
        row = -1
        if not result.error:
            row, count = self.ok, len(result.clip_indices)
            self.clip[row, :count] = result.clip
            self.mask[row, :count] = True
            self.ok += 1
            self.padded += count < self.num_frames
            for k, (source, stamp, jpeg) in enumerate(result.vlm):
                self.vlm_rows.append((video_id, k, source, stamp, jpeg))
                self.vlm_frames, self.vlm_bytes = self.vlm_frames + 1, self.vlm_bytes + len(jpeg)
            if self.ok % VLM_GROUP_VIDEOS == 0:
                self._flush_vlm()
        self.index_rows.append({
            "video_id": video_id, "row": row, "split": split,
            "status": "ok" if row >= 0 else "skipped", "error": result.error,
            "source_frames": result.source_frames, "frame_indices": result.clip_indices,
        })

    def finish(self) -> dict[str, Any]:
        """Close the streams, write mask, index and summary; return the summary."""
        if self.ok == 0 and not self.allow_empty:
            first = "; ".join(r["error"] for r in self.index_rows[:3])
            raise FramesError(f"all {self.num_videos} videos failed (first: {first})")
        self._flush_vlm()
        self.vlm.close()
        self.clip.flush()
        self.clip = None  # unmap before the file may be rewritten
        if self.ok < self.num_videos:
            _truncate_rows(self.directory / CLIP_FRAMES, self.ok)
        write_npy(self.mask[: self.ok], self.directory / CLIP_MASK)
        write_parquet(pa.Table.from_pylist(self.index_rows, schema=INDEX_SCHEMA), self.directory / INDEX)
        summary = {
            "videos": self.num_videos, "ok": self.ok, "skipped": self.num_videos - self.ok,
            "padded": self.padded, "num_frames": self.num_frames, "image_size": self.size,
            "sampling": self.sampling, "sample_fps": self.sample_fps, "fps_stride": self.fps_stride,
            "max_seconds": self.max_seconds, "padding": self.padding,
            "vlm_frames": self.vlm_frames, "vlm_bytes": self.vlm_bytes,
        }
        write_json(summary, self.directory / SUMMARY)
        return summary

    def _flush_vlm(self) -> None:
        """Write the buffered VLM rows as one Parquet row group."""
        if self.vlm_rows:
            values = zip(*self.vlm_rows)
            columns = [pa.array(column, spec.type) for column, spec in zip(values, VLM_SCHEMA)]
            self.vlm.write_table(pa.Table.from_arrays(columns, schema=VLM_SCHEMA))
            self.vlm_rows.clear()


def _checked_videos(videos_df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in videos_df.columns]
    if missing:
        raise ValueError(f"videos table lacks column(s) {missing}; has {list(videos_df.columns)}")
    if len(videos_df) == 0:
        raise ValueError("videos table is empty: no videos to extract frames from")
    duplicated = videos_df["video_id"][videos_df["video_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"videos table has duplicate video_id(s): {duplicated[:5]}")
    return videos_df.reset_index(drop=True)


def _truncate_rows(path: Path, keep: int, chunk: int = 256) -> None:
    """Rewrite a .npy keeping its first ``keep`` rows (chunked: the array may exceed RAM)."""
    source = load_npy(path, mmap_mode="r")
    with atomic_path(path) as tmp:
        target = open_npy_writer(tmp, (keep, *source.shape[1:]), source.dtype)
        for start in range(0, keep, chunk):
            target[start : start + chunk] = source[start : min(start + chunk, keep)]
        target.flush()
        del target
    del source


T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in input order, at most 2 x workers ahead."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frames") as pool:
        yield from ordered_map(fn, items, pool, 2 * workers)
