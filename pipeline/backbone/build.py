"""The backbone stage: produce the CLIP weights file (tiny pretraining or official ViT-B/32)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pipeline.backbone.config import BackboneConfig
from pipeline.backbone.data import load_video_text_set
from pipeline.backbone.io import file_sha256, save_weights
from pipeline.backbone.official import load_official
from pipeline.backbone.stream import ClipGeometry, geometry_of
from pipeline.backbone.tiny import pretrain_tiny, retrieval_r1
from pipeline.config import to_dict

log = logging.getLogger(__name__)

EVAL_SPLITS = ("train", "val", "test")


def clip_geometry(videos_path: str | Path, frames_dir: str | Path) -> ClipGeometry:
    """Size, frame rate and lengths of the prepared training clips, and the CLIP frame shape."""
    import numpy as np

    from pipeline.io import read_parquet

    videos = read_parquet(videos_path, columns=["split", "fps", "num_frames", "width", "height"])
    train = videos[videos["split"] == "train"]
    frames = np.load(Path(frames_dir) / "clip_frames.npy", mmap_mode="r")
    return geometry_of(train["width"], train["height"], train["fps"], train["num_frames"],
                       int(frames.shape[1]), int(frames.shape[2]))


def build_backbone(cfg: BackboneConfig, frames_dir: str | Path, captions_path: str | Path,
                   out: str | Path, progress: bool = True,
                   tags_path: str | Path | None = None,
                   videos_path: str | Path | None = None,
                   visual_tagger: Any = None) -> dict[str, Any]:
    """Write the weights file to ``out``; return the stage metrics.

    ``tiny``: pretrain on the train split, then report frame-mean vs caption R@1 on every
    split present (train shows the fit, val/test how far frozen features generalise).
    ``visual_tagger`` (an ``OfflineVisualConfig``) writes fresh clips' visual tags when
    ``tiny.tag_visual_weight > 0`` and ``tiny.fresh_fraction > 0``.
    ``vit-b-32``: load and verify the official weights; frames and captions are not read
    (encoding a real dataset with ViT-B/32 on a CPU would take hours).
    """
    start = time.perf_counter()
    metrics: dict[str, Any] = {"kind": cfg.kind}
    if cfg.kind == "tiny":
        wants_tags = cfg.tiny.tag_text_weight > 0 or cfg.tiny.tag_visual_weight > 0
        if wants_tags and tags_path is None:
            raise ValueError("backbone.tiny.tag_text_weight / tag_visual_weight > 0 need the tags (pass --tags)")
        train = load_video_text_set(frames_dir, captions_path, "train", tags_path if wants_tags else None)
        log.info("pretraining tiny CLIP on %d train videos, %d captions",
                 len(train.video_ids), len(train.captions))
        geometry = None
        if cfg.tiny.fresh_fraction > 0:
            if videos_path is None:
                raise ValueError("backbone.tiny.fresh_fraction > 0 needs the prepared videos table (--videos)")
            geometry = clip_geometry(videos_path, frames_dir)
        model, history = pretrain_tiny(cfg.tiny, train, progress=progress, geometry=geometry,
                                       visual_tagger=visual_tagger)
        metrics.update(train_seconds=round(history["seconds"], 2), steps=history["steps"],
                       first_epoch_loss=history["epoch_loss"][0],
                       last_epoch_loss=history["epoch_loss"][-1],
                       logit_scale=history["logit_scale"])
        readout = history.pop("readout")
        r1 = {"train": retrieval_r1(model, train, readout=readout)}
        for split in EVAL_SPLITS[1:]:
            try:
                r1[split] = retrieval_r1(model, load_video_text_set(frames_dir, captions_path, split),
                                         readout=readout)
            except ValueError as err:  # the split is absent from this dataset
                log.info("no %s evaluation: %s", split, err)
        metrics["r1"] = r1
        source: dict[str, Any] = {"kind": "tiny", "config": to_dict(cfg.tiny)}
    else:
        model, source = load_official(cfg.path, cfg.sha256)
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    save_weights(model, out, source)
    metrics["weights_sha256"] = file_sha256(out)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics
