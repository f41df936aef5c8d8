"""The ``prepare`` stage: one dataset's annotations -> ``videos.parquet`` + ``captions.parquet``.

An adapter per dataset reads annotations and locates files; here every video is probed for its
metadata, captions get ids ``<video_id>#<caption_index>``, both tables are validated against
``pipeline.data.schema``, and the output folder (tables, ``summary.json``, and for the synthetic
dataset its ``videos/`` and ``synthetic_truth.json``) replaces the old one whole, atomically.

Unusable videos (no file found, empty, unreadable) stop the stage with ``on_missing: raise``:
every video is located and probed first, so one run reports all of them (a count per cause and
the first few, each with its file and cause), not only the first. With ``on_missing: skip``
they and their captions are left out and listed in ``summary.json`` — public dumps of DiDeMo
and ActivityNet always miss some videos.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import pandas as pd
from tqdm import tqdm

from pipeline.config import registry_field
from pipeline.data.common import Annotations, DatasetError
from pipeline.data.datasets import DATASETS, SourceConfig
from pipeline.data.probe import VideoInfo, VideoProbeError, probe_video
from pipeline.data.schema import (
    CAPTIONS_SCHEMA,
    SPLITS,
    VIDEOS_SCHEMA,
    validate_captions,
    validate_videos,
    write_captions,
    write_videos,
)
from pipeline.io import atomic_dir, write_json

log = logging.getLogger(__name__)

VIDEOS_FILE = "videos.parquet"
CAPTIONS_FILE = "captions.parquet"
SUMMARY_FILE = "summary.json"
# Keys of a real dataset's section that may stay empty even when it is selected.
_OPTIONAL_PATHS = {("didemo", "val_json")}


def _datasets():
    return DATASETS


@dataclass(frozen=True)
class PrepareConfig:
    """``prepare`` section of params.yaml: which dataset, where its files are, every dataset's knobs.

    dataset: a registered adapter (``pipeline.data.datasets.DATASETS``).
    on_missing: ``raise`` stops on unusable videos (listing them), ``skip`` leaves them out.
    source: the chosen dataset's annotation and video folders (DVC dependencies).
    datasets: ``{adapter: its knobs}``; only ``dataset``'s entry is used, and its file names
        must be non-empty (DiDeMo's ``val_json`` may be "" to leave out the val split).
    """

    dataset: str
    on_missing: Literal["raise", "skip"]
    source: SourceConfig
    datasets: dict = registry_field(_datasets)

    def __post_init__(self) -> None:
        DATASETS.get(self.dataset)  # RegistryError (a ValueError) naming the registered datasets
        if self.dataset not in self.datasets:
            raise ValueError(f"dataset is {self.dataset!r} but prepare.datasets has no {self.dataset!r} entry")
        section = self.datasets[self.dataset]
        empty = [f.name for f in fields(section) if isinstance(getattr(section, f.name), str)
                 and not getattr(section, f.name).strip() and (self.dataset, f.name) not in _OPTIONAL_PATHS]
        if empty:
            raise ValueError(f"dataset is {self.dataset!r} but prepare.datasets.{self.dataset}."
                             f"{empty[0]} is empty" + (f" (and {empty[1:]})" if empty[1:] else ""))

    @property
    def adapter(self):
        return DATASETS.get(self.dataset)

    @property
    def params(self):
        """The chosen dataset's knobs."""
        return self.datasets[self.dataset]


class PrepareError(RuntimeError):
    """The stage cannot produce a consistent dataset (e.g. videos missing with on_missing=raise)."""


def prepare(config: PrepareConfig, out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build ``out_dir`` for ``config.dataset`` and return the (videos, captions) tables."""
    out_dir = Path(out_dir)
    _refuse_foreign_dir(out_dir)
    with atomic_dir(out_dir) as work:
        prepared = config.adapter.prepare(config.params, config.source, work, out_dir)
        annotations = prepared.annotations
        videos, captions, skipped = assemble(annotations, config.on_missing)
        write_videos(videos, work / VIDEOS_FILE)
        write_captions(captions, work / CAPTIONS_FILE, videos)
        for name, content in prepared.extra_files.items():
            write_json(content, work / name)
        write_json(summarise(annotations.dataset, videos, captions, skipped), work / SUMMARY_FILE)
    log.info("prepared %s: %d videos, %d captions, %d skipped -> %s", annotations.dataset,
             len(videos), len(captions), len(skipped), out_dir)
    return videos, captions


def _refuse_foreign_dir(out_dir: Path) -> None:
    """The output folder is replaced whole: refuse one that is not ours (or holds the cwd)."""
    resolved, cwd = out_dir.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise PrepareError(f"{out_dir}: refusing to replace a folder that contains the working "
                           f"directory; give a dedicated output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / VIDEOS_FILE).exists():
        raise PrepareError(f"{out_dir}: exists, is not empty and holds no {VIDEOS_FILE}; "
                           f"refusing to replace it")


SHOWN_UNUSABLE = 10  # unusable videos named in the on_missing: raise error


def assemble(annotations: Annotations, on_missing: str) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 list[dict]]:
    """Probe the located videos and build validated tables; also return the skipped videos."""
    dataset = annotations.dataset
    unusable: dict[str, tuple[str, str]] = {}  # video_id -> (cause, message)
    for v in annotations.videos:
        if v.problem:
            unusable[v.video_id] = ("missing", v.problem)
    probed: dict[str, VideoInfo] = {}
    found = [v for v in annotations.videos if not v.problem]
    for entry in tqdm(found, desc=f"probing {dataset} videos", unit="video"):
        try:
            probed[entry.video_id] = probe_video(entry.probe_path)
        except VideoProbeError as err:
            unusable[entry.video_id] = (err.cause, str(err))
    if unusable and on_missing == "raise":
        raise PrepareError(_unusable_message(annotations, unusable))
    skipped = [{"video_id": v.video_id, "split": v.split, "reason": unusable[v.video_id][1]}
               for v in annotations.videos if v.video_id in unusable]
    rows = []
    for entry in found:
        info = probed.get(entry.video_id)
        if info is None:
            continue
        rows.append({"video_id": entry.video_id, "path": entry.path, "split": entry.split,
                     "duration": info.duration, "fps": info.fps, "num_frames": info.num_frames,
                     "width": info.width, "height": info.height, "dataset": dataset})
    for split in sorted({v.split for v in annotations.videos}):
        if not any(r["split"] == split for r in rows):
            raise PrepareError(f"{dataset}: no usable video left in the {split} split")
    if skipped:
        log.warning("%s: skipped %d unusable videos (listed in %s)", dataset, len(skipped),
                    SUMMARY_FILE)
    videos = validate_videos(pd.DataFrame(rows, columns=VIDEOS_SCHEMA.names))
    captions = validate_captions(_caption_rows(annotations, videos), videos)
    return videos, captions, skipped


def _unusable_message(annotations: Annotations, unusable: dict[str, tuple[str, str]]) -> str:
    """One line: how many videos are unusable, by cause, and the first few with their files."""
    causes = Counter(cause for cause, _ in unusable.values())
    by_cause = ", ".join(f"{n} {cause}" for cause, n in sorted(causes.items()))
    listed = [v for v in annotations.videos if v.video_id in unusable]
    shown = "; ".join(f"{v.video_id} ({v.split}): {unusable[v.video_id][1]}"
                      for v in listed[:SHOWN_UNUSABLE])
    more = f"; ... and {len(listed) - SHOWN_UNUSABLE} more" if len(listed) > SHOWN_UNUSABLE else ""
    return (f"{annotations.dataset}: {len(unusable)} of {len(annotations.videos)} videos are unusable "
            f"({by_cause}): {shown}{more} (set prepare.on_missing: skip to leave them out; "
            f"summary.json then lists them)")


def _caption_rows(annotations: Annotations, videos: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for vid, split in zip(videos["video_id"], videos["split"]):
        for k, text in enumerate(annotations.texts.get(vid, [])):
            rows.append({"caption_id": caption_id(vid, k), "video_id": vid, "split": split,
                         "caption_index": k, "text": text})
    return pd.DataFrame(rows, columns=CAPTIONS_SCHEMA.names)


def caption_id(video_id: str, caption_index: int) -> str:
    """The id of a caption: ``<video_id>#<caption_index>`` (unique, readable, stable)."""
    return f"{video_id}#{caption_index}"


def summarise(dataset: str, videos: pd.DataFrame, captions: pd.DataFrame,
              skipped: list[dict]) -> dict:
    """Counts per split (and the skipped videos) for ``summary.json``."""
    def per_split(counts: Counter) -> dict[str, int]:
        return {s: int(counts[s]) for s in SPLITS if counts[s]}
    return {"dataset": dataset,
            "videos": per_split(Counter(videos["split"])),
            "captions": per_split(Counter(captions["split"])),
            "skipped_count": per_split(Counter(s["split"] for s in skipped)),
            "skipped": skipped}


__all__ = ["PrepareConfig", "PrepareError", "DatasetError", "prepare", "assemble", "caption_id",
           "summarise", "VIDEOS_FILE", "CAPTIONS_FILE", "SUMMARY_FILE"]
