"""Finding a dataset's video files by id, whatever their extension or sub-folder.

Public dumps of MSR-VTT, DiDeMo and ActivityNet come with mixed extensions (DiDeMo: .mp4, .avi,
.mov, .m4v, ...; ActivityNet: .mp4, .mkv, .webm) and sometimes in per-split sub-folders, so
files are indexed once by full name and by stem (name minus its last extension).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Preference when one stem has several files (e.g. a re-encoded .mp4 next to the original .webm):
# the formats decoders handle most reliably first.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".webm", ".mkv", ".mov", ".avi", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".3gp", ".3g2", ".ogv", ".ts", ".mts", ".m2ts")


def strip_video_extension(name: str) -> str:
    """``name`` without a trailing video extension (``a.mov`` -> ``a``; ``a.b`` unchanged)."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in VIDEO_EXTENSIONS else name


class VideoIndex:
    """All video files under ``video_dir`` (recursively, hidden entries skipped)."""

    def __init__(self, video_dir: str | Path):
        self.video_dir = Path(video_dir)
        if not self.video_dir.is_dir():
            raise FileNotFoundError(f"{self.video_dir}: video directory not found")
        self._by_name: dict[str, Path] = {}
        self._by_stem: dict[str, list[Path]] = {}
        for root, dirs, files in os.walk(self.video_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(root) / name
                # First one wins on a name repeated across sub-folders: walk order is sorted.
                self._by_name.setdefault(name, path)
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    self._by_stem.setdefault(stem, []).append(path)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_stem.values())

    def find(self, candidates: Iterable[str]) -> Path | None:
        """The file for the first candidate name that matches, exactly or by stem; else None."""
        for name in candidates:
            if name in self._by_name:
                return self._by_name[name]
            paths = self._by_stem.get(name)
            if paths:
                return min(paths, key=lambda p: (VIDEO_EXTENSIONS.index(p.suffix.lower()), str(p)))
        return None

    def describe(self, candidates: Iterable[str]) -> str:
        """Human-readable 'what was looked for' for a not-found error."""
        names = ", ".join(repr(c) for c in dict.fromkeys(candidates))
        return f"no file named {names} (any video extension) under {self.video_dir}"
