"""``macvr index``: a searchable gallery from a folder of videos, or from the prepared test split.

A gallery directory holds everything a search needs, next to the model that will score it::

    gallery.json        what it is: videos (id, path), the checkpoint and backbone it was built
                        with (copied here), the settings used
    model.pt            the trained checkpoint (a hard link or copy)
    backbone.pt         the frozen backbone that encoded the features (cached-mode checkpoints)
    shortlist/          the two-stage index (pipeline.index.shortlist): encoded frames, mask,
                        visual tag sentences, the ANN over query-independent video vectors
    frames/ tags/       (folder galleries) the frames stage's and the visual taggers' outputs

From a folder, every video goes through the same code as the pipeline: the frames stage
(``frames`` params), the visual tagger at every ``search.temperatures`` value (``tag_video``
params: the offline tagger or a vLLM server), tag cleaning (``clean_tags``), the trained model's
backbone (the fine-tuned one, or the frozen backbone), then the shortlist build. From a split of
the features directory, the cached features (or the fine-tuned backbone's re-encoding) are used.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import atomic_dir, read_json, write_json, write_parquet

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".3gp")
META = "gallery.json"


class GalleryError(ValueError):
    """The gallery cannot be built or read (no videos, a model that does not fit, ...)."""


def list_videos(folder: str | Path) -> pd.DataFrame:
    """Every video file under ``folder`` (recursively), id = its path relative to the folder
    without suffix; sorted, so the gallery is the same whatever the filesystem's order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"{folder}: not a folder of videos")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise GalleryError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    ids = [str(p.relative_to(folder).with_suffix("")) for p in files]
    return pd.DataFrame({"video_id": ids, "path": [str(p.resolve()) for p in files], "split": "gallery"})


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across filesystems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _visual_tags(frames_dir: Path, videos: pd.DataFrame, params: Path, temperatures: list[float],
                 cache: Path, work: Path) -> dict[str, list[str]]:
    """Visual tags of every video: the tagger at each temperature, cleaned and merged as clean_tags."""
    from pipeline.config import load_section
    from pipeline.tags.build import build_tags
    from pipeline.tags.clean import CleanConfig
    from pipeline.tags.table import read_tags
    from pipeline.tags.tag_video import TagVideoConfig, tag_video

    cfg = load_section(TagVideoConfig, "tag_video", params)
    clean = load_section(CleanConfig, "clean_tags", params)
    raw = []
    for t in sorted(temperatures):
        out = work / "tags" / "raw" / f"video_t{round(t * 10):02d}.parquet"
        tag_video(cfg, frames_dir / "vlm_frames.parquet", t, cache, out)
        raw.append(out)
    write_parquet(videos[["video_id", "split"]], work / "tags" / "videos.parquet")
    build_tags(clean, [], raw, work / "tags" / "videos.parquet", work / "tags" / "videos.parquet",
               work / "tags" / "tags.parquet", work / "tags" / "metrics.json")
    return read_tags(work / "tags" / "tags.parquet").visual


def build_gallery(out: str | Path, model_path: str | Path, params: str | Path, *, videos_dir: str | Path | None = None,
                  features: str | Path | None = None, split: str = "test", backbone: str | Path | None = None,
                  frames_dir: str | Path | None = None, tags_path: str | Path | None = None,
                  device: str = "cpu", batch: int = 64) -> dict[str, Any]:
    """Build the gallery directory ``out`` (replaced whole); return its ``gallery.json``."""
    import torch

    from pipeline.backbone.encode import encode_text_array, encode_video_array
    from pipeline.config import load_section
    from pipeline.evaluation.trained import ItemSources, TrainedModel
    from pipeline.tags.sentences import infer_sentence
    from pipeline.index.shortlist import ShortlistIndex
    from pipeline.index.config import SearchConfig

    if (videos_dir is None) == (features is None):
        raise GalleryError("give exactly one of a folder of videos or a features directory (with --split)")
    cfg = load_section(SearchConfig, "search", params)
    model = TrainedModel.load(model_path, device)
    out = Path(out)
    with atomic_dir(out) as tmp:
        _link(Path(model_path), tmp / "model.pt")
        if features is not None:
            from pipeline.features.store import load_features

            store = load_features(features)
            model.check_features(store)
            chosen = store.videos if split == "all" else store.videos[store.videos["split"] == split]
            if chosen.empty:
                raise GalleryError(f"{features} has no {split!r} videos")
            ids = [str(v) for v in chosen["video_id"]]
            gallery = model.video_set(store, chosen["row"].to_numpy(np.int64), ids,
                                      ItemSources(frames=None if frames_dir is None else Path(frames_dir),
                                                  tags=None if tags_path is None else Path(tags_path),
                                                  batch_size=batch), "gallery")
            frames_arr, mask, tags_v = np.asarray(gallery.frames[:]), np.asarray(gallery.mask[:]), \
                None if gallery.tags is None else np.asarray(gallery.tags[:])
            infer_tags, paths = int(store.meta["infer_tags"]), {}
            source = {"features": str(features), "split": split}
            if tags_path is not None:  # the hits show each video's visual tags
                (tmp / "tags").mkdir()
                _link(Path(tags_path), tmp / "tags" / "tags.parquet")
            frozen_sha = store.meta.get("backbone_sha256")
        else:
            from pipeline.frames.extract import FramesConfig, extract_frames
            from pipeline.frames.store import FrameStore

            table = list_videos(videos_dir)
            frames_cfg = load_section(FramesConfig, "frames", params)
            log.info("indexing %d videos from %s", len(table), videos_dir)
            extract_frames(frames_cfg, table, tmp / "frames")
            store = FrameStore(tmp / "frames")
            ids = list(store.video_ids)
            skipped = len(table) - len(ids)
            if skipped:
                log.warning("%d videos could not be decoded and are not in the gallery", skipped)
            encoder = model.backbone if model.finetuned else _frozen(backbone, device)
            frames_arr, mask = encode_video_array(encoder, store.clip_frames, store.clip_mask, store.rows(ids),
                                                  store.padding, batch, "gallery frames", progress=True)
            infer_tags = _infer_tags(model, params)
            tags_v = None
            if model.config.use_visual_tags:
                visual = _visual_tags(tmp / "frames", table, Path(params), cfg.temperatures,
                                      Path(cfg.cache), tmp)
                sentences = [infer_sentence(visual.get(v, []), infer_tags) for v in ids]
                tags_v, _ = encode_text_array(encoder, sentences, model.max_words, batch, "gallery tags")
            paths = dict(zip(table["video_id"], table["path"]))
            source = {"videos": str(Path(videos_dir).resolve())}
            frozen_sha = None
        if not model.finetuned:
            if backbone is None:
                raise GalleryError("a cached-features checkpoint needs the frozen backbone (--backbone)")
            from pipeline.backbone.io import file_sha256

            if frozen_sha is not None and file_sha256(backbone) != frozen_sha:
                raise GalleryError(f"{backbone} is not the backbone that encoded {features}")
            _link(Path(backbone), tmp / "backbone.pt")
        with torch.no_grad():
            index = ShortlistIndex.build(model.head, frames_arr, mask, tags_v, config=cfg.shortlist_config(), ids=ids)
        index.save(tmp / "shortlist")
        meta = {"format": 1, "videos": len(ids), "ids": ids, "paths": [paths.get(v, "") for v in ids],
                "infer_tags": infer_tags, "variant": model.variant, "finetuned": model.finetuned,
                "max_words": model.max_words, "source": source}
        write_json(meta, tmp / META)
    return meta


def _infer_tags(model, params: str | Path) -> int:
    """M, the tags in an inference sentence: what the checkpoint was trained with, else ``features``."""
    recorded = model.run.get("features", {}).get("infer_tags")
    if recorded is not None:
        return int(recorded)
    from pipeline.config import load_section
    from pipeline.features.config import FeaturesConfig

    return load_section(FeaturesConfig, "features", params).infer_tags


def _frozen(backbone: str | Path | None, device: str):
    if backbone is None:
        raise GalleryError("a cached-features checkpoint needs the frozen backbone that encoded its features "
                           "(--backbone) to encode a new gallery")
    from pipeline.backbone.io import load_backbone

    return load_backbone(backbone, device)


def read_gallery(directory: str | Path) -> dict[str, Any]:
    """A gallery's ``gallery.json`` (checked)."""
    path = Path(directory) / META
    if not path.is_file():
        raise GalleryError(f"{directory}: not a gallery (no {META}); build one with `macvr index`")
    meta = read_json(path)
    if meta.get("format") != 1:
        raise GalleryError(f"{path}: unknown gallery format {meta.get('format')!r}")
    return meta
