"""What every dataset adapter returns, and the small readers they share.

An adapter turns one dataset's annotation files into :class:`Annotations`: the videos (with
their split and located file, or why none was found) and each video's caption texts in order.
Probing, ids, validation and writing are the same for every dataset (``pipeline.data.prepare``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.data.locate import VideoIndex


class DatasetError(ValueError):
    """Annotation files or video files do not match what the adapter expects."""


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset, before probing."""

    video_id: str
    split: str
    path: str  # as it will be stored in videos.parquet ("" when not found)
    local_path: str = ""  # where to probe it now, if not ``path`` (synthetic: the temp dir)
    problem: str = ""  # why no usable file was found ("" when found)

    @property
    def probe_path(self) -> str:
        return self.local_path or self.path


@dataclass(frozen=True)
class Annotations:
    """A dataset's videos (in table order) and their caption texts (in caption_index order)."""

    dataset: str
    videos: list[VideoEntry]
    texts: dict[str, list[str]] = field(default_factory=dict)


def require_file(path: str, key: str) -> Path:
    """``path`` from config key ``key`` as an existing file, or a clear error naming both."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{key}: file not found: {path!r}")
    return p


def load_json(path: Path) -> Any:
    """Parse a JSON annotation file; a syntax error names the file, line and column."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: malformed JSON ({err.msg} at line {err.lineno}, "
                           f"column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise DatasetError(not_utf8(path, err)) from None


def not_utf8(path: Path, err: UnicodeDecodeError) -> str:
    """The message for an annotation file that is not UTF-8 text (e.g. a video given as json)."""
    return f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"


def paragraph(sentences: Iterable[str]) -> str:
    """Sentences stripped and joined by one space (empty ones dropped): a paragraph caption."""
    return " ".join(s.strip() for s in sentences if s.strip())


def locate(index: VideoIndex, video_id: str, split: str, candidates: list[str]) -> VideoEntry:
    """A :class:`VideoEntry` for ``video_id`` whose file is the first match of ``candidates``."""
    found = index.find(candidates)
    if found is None:
        return VideoEntry(video_id, split, "", problem=index.describe(candidates))
    return VideoEntry(video_id, split, str(found))


def check_disjoint(splits: dict[str, Iterable[str]], dataset: str) -> None:
    """Refuse a video id listed in two splits (it would leak test videos into training)."""
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        for vid in ids:
            if vid in seen and seen[vid] != split:
                raise DatasetError(f"{dataset}: video {vid!r} is in both the {seen[vid]} and "
                                   f"{split} splits")
            seen.setdefault(vid, split)


def video_index(video_dir: str, key: str) -> VideoIndex:
    """Index of ``video_dir`` (config key ``key``), or a clear error when it is not a folder."""
    if not Path(video_dir).is_dir():
        raise DatasetError(f"{key}: video directory not found: {video_dir!r}")
    return VideoIndex(video_dir)
