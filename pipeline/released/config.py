"""``params.yaml: released`` -- where the authors' published artifacts are, and how to read them.

dir: the folder holding them (``released/`` by default, git-ignored but for its README). It is a
    DVC dependency of ``clean_tags`` and of every ``train@<variant>``, so an edited tags file or a
    replaced checkpoint re-runs what depends on it. Relative paths below (and a variant's
    ``released`` checkpoint) start here; absolute paths are used as given (then DVC does not
    track them: a warning says so).
tags: null to generate tags (tag_text / tag_video / clean_tags); otherwise the folder of the
    authors' annotation files *with tags* (e.g. ``data/MSR-VTT/anns/llama3`` of their ``data``
    archive, or ``data/DiDeMo/anns``): the tag stages then do no work and ``clean_tags`` imports.
tags_format: ``auto`` (msrvtt: ``csv``; didemo, activitynet: ``concepts``), ``csv`` or ``concepts``.
csv_files: the ``csv`` format's files (header row; columns by position: video id, caption,
    textual tags, visual tags; tag lists as Python literals; one row per caption).
concepts_file: the ``concepts`` format's file (``{video_id: [visual tags literal, textual tags
    literal]}``, one entry per video; the textual tags are its paragraph's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

TAG_FORMATS = ("csv", "concepts")
#: ``tags_format: auto`` by prepared dataset (the format the official loader of that dataset reads).
AUTO_FORMAT = {"msrvtt": "csv", "didemo": "concepts", "activitynet": "concepts"}


@dataclass(frozen=True)
class ReleasedConfig:
    dir: str
    tags: str | None
    tags_format: Literal["auto", "csv", "concepts"]
    csv_files: list[str]
    concepts_file: str

    def __post_init__(self) -> None:
        if not self.dir:
            raise ValueError("released.dir must name a folder")
        if self.tags is not None and not self.tags.strip():
            raise ValueError("released.tags must be null or a folder")
        if not self.csv_files or any(not f for f in self.csv_files):
            raise ValueError(f"released.csv_files must list at least one file name, got {self.csv_files}")
        if not self.concepts_file:
            raise ValueError("released.concepts_file must name a file")

    @property
    def uses_released_tags(self) -> bool:
        return self.tags is not None

    def resolve(self, path: str, what: str) -> Path:
        """``path`` under ``dir`` (or absolute as given, with a warning: DVC does not track it)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            try:
                p.resolve().relative_to(Path(self.dir).resolve())
            except ValueError:
                log.warning("%s %s is outside released.dir (%s): DVC does not track it, so editing it will not "
                            "re-run the stages that read it", what, p, self.dir)
            return p
        return Path(self.dir) / p

    def tag_format(self, dataset: str) -> str:
        """The tag file format for a prepared ``dataset`` (``auto`` resolved)."""
        return resolve_tag_format(self.tags_format, dataset, "released.tags_format")


def resolve_tag_format(setting: str, dataset: str, where: str) -> str:
    """``setting`` (auto | csv | concepts) for a prepared ``dataset``: auto picks the format the
    official loader of that dataset reads."""
    if setting != "auto":
        return setting
    if dataset not in AUTO_FORMAT:
        raise ValueError(f"{where}: auto knows the official formats of {sorted(AUTO_FORMAT)}, "
                         f"not of dataset {dataset!r}; set it to csv or concepts")
    return AUTO_FORMAT[dataset]
