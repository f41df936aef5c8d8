"""The features stage: frozen CLIP features of frames, captions and tag sentences.

Long runs are resumable: arrays are filled in a work directory beside the output
(``.<out>.work``) with a progress marker, so a killed run continues where it stopped; the
finished directory then replaces ``out`` whole (atomic swap). Each distinct text (caption or
tag sentence) is encoded once and gathered into the per-row arrays at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backbone.arch import ClipArch
from pipeline.backbone.io import file_sha256, load_clip
from pipeline.config import to_dict
from pipeline.features import store
from pipeline.features.config import FeaturesConfig
from pipeline.device import resolve_device
from pipeline.features.encode import encode_unique_texts, encode_video_frames
from pipeline.features.inputs import FeatureInputs, load_inputs
from pipeline.features.tags import PREFIX, infer_sentence, train_sentences
from pipeline.features.workdir import WorkDir
from pipeline.io import atomic_dir, write_json, write_parquet

log = logging.getLogger(__name__)

GATHER_ROWS = 1 << 15  # rows per copy when gathering text features (bounds memory)


class TextTable:
    """Distinct texts in first-seen order; ``add`` returns their indices."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, texts: Iterable[str]) -> np.ndarray:
        out = []
        for text in texts:
            i = self._index.get(text)
            if i is None:
                i = self._index[text] = len(self.texts)
                self.texts.append(text)
            out.append(i)
        return np.asarray(out, dtype=np.int64)


def text_indices(inputs: FeatureInputs, cfg: FeaturesConfig) -> tuple[TextTable, dict[str, np.ndarray]]:
    """Every text to encode, and per output array the index of each row's text."""
    table = TextTable()
    r, n, m, seed = cfg.train_tag_draws, cfg.train_tags_per_draw, cfg.infer_tags, cfg.seed
    idx = {"captions": table.add(inputs.captions["text"])}
    for modality, ids, tags in (("visual", inputs.videos["video_id"], inputs.visual_tags),
                                ("textual", inputs.captions["caption_id"], inputs.textual_tags)):
        train = [s for item, t in zip(ids, tags) for s in train_sentences(t, r, n, seed, modality, item)]
        idx[f"tags_{modality}_train"] = table.add(train).reshape(len(ids), r)
        idx[f"tags_{modality}_infer"] = table.add(infer_sentence(t, m) for t in tags)
    return table, idx


def _fingerprint(backbone_sha: str, frames_dir: Path, inputs: FeatureInputs,
                 texts: list[str], cfg: FeaturesConfig) -> str:
    """What the work arrays depend on (batch size and device only change rounding)."""
    h = hashlib.sha256()
    frames_file = frames_dir / "clip_frames.npy"
    stat = frames_file.stat()
    head = {"backbone": backbone_sha, "frames": [str(frames_file.resolve()), stat.st_size, stat.st_mtime_ns],
            "frame_rows": inputs.videos["frame_row"].tolist(), "draws": cfg.train_tag_draws,
            "per_draw": cfg.train_tags_per_draw, "infer": cfg.infer_tags, "seed": cfg.seed}
    h.update(json.dumps(head, sort_keys=True).encode())
    for text in texts:
        h.update(text.encode("utf-8") + b"\0")
    return h.hexdigest()


def _gather(src: np.ndarray, index: np.ndarray, dst: Path) -> None:
    """``dst.npy = src[index]`` (index of any shape), copied in bounded chunks."""
    flat = index.reshape(-1)
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=src.dtype,
                                    shape=(*index.shape, src.shape[1]))
    view = out.reshape(-1, src.shape[1])
    for lo in range(0, len(flat), GATHER_ROWS):
        sel = flat[lo: lo + GATHER_ROWS]
        view[lo: lo + len(sel)] = src[sel]
    out.flush()
    del out


def extract_features(cfg: FeaturesConfig, backbone: str | Path, frames_dir: str | Path,
                     videos_path: str | Path, captions_path: str | Path, tags_path: str | Path,
                     out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Write the features directory ``out`` (see :mod:`pipeline.features.store`); return its meta."""
    frames_dir, out = Path(frames_dir), Path(out)
    inputs = load_inputs(frames_dir, videos_path, captions_path, tags_path)
    table, idx = text_indices(inputs, cfg)
    backbone_sha = file_sha256(backbone)
    work = WorkDir(out.with_name(f".{out.name}.work"),
                   _fingerprint(backbone_sha, frames_dir, inputs, table.texts, cfg))
    if work.resumed:
        log.info("resuming from %s", work.path)
    device = resolve_device(cfg.device, "features.device")
    model = load_clip(backbone, device)
    frames = np.load(frames_dir / "clip_frames.npy", mmap_mode="r")
    mask = np.load(frames_dir / "clip_mask.npy", mmap_mode="r")
    if mask.shape != frames.shape[:2]:
        raise ValueError(f"{frames_dir}: clip_mask.npy {mask.shape} does not match "
                         f"clip_frames.npy {frames.shape[:2]}")
    frame_rows = inputs.videos["frame_row"].to_numpy()
    if len(frame_rows) and frame_rows.max() >= len(frames):
        raise ValueError(f"{frames_dir}: index.parquet row {frame_rows.max()} exceeds "
                         f"clip_frames.npy ({len(frames)} rows)")
    log.info("encoding %d videos x %d frames and %d distinct texts on %s", len(frame_rows),
             frames.shape[1], len(table.texts), device)
    encode_video_frames(model, frames, mask, frame_rows, work, cfg.batch_size, progress)
    texts, truncated = encode_unique_texts(model, table.texts, work, cfg.batch_size, progress)
    if truncated.any():
        log.warning("%d of %d distinct texts were longer than the %d-token context and were "
                    "truncated", int(truncated.sum()), len(truncated), model.context_length)
    meta = {
        "format": store.FORMAT, "version": store.VERSION, "dim": int(texts.shape[1]),
        "num_frames": int(frames.shape[1]), **to_dict(cfg), "sentence_prefix": PREFIX,
        "backbone_sha256": backbone_sha, "backbone_arch": ClipArch.of(model).to_dict(),
        "counts": {**inputs.counts, "distinct_texts": len(table.texts),
                   "truncated_texts": int(truncated.sum())},
        "splits": {s: {"videos": int((inputs.videos["split"] == s).sum()),
                       "captions": int((inputs.captions["split"] == s).sum())}
                   for s in sorted(set(inputs.videos["split"]))},
    }
    del meta["device"], meta["batch_size"]  # how it ran, not what it is
    with atomic_dir(out) as tmp:
        os.replace(work.file("frames"), tmp / "frames.npy")
        np.save(tmp / "frame_mask.npy", np.ascontiguousarray(mask[frame_rows], dtype=bool))
        for name, index in idx.items():
            _gather(texts, index, tmp / f"{name}.npy")
        write_parquet(inputs.videos[["video_id", "row", "split"]], tmp / store.VIDEOS)
        write_parquet(inputs.captions[["caption_id", "video_id", "row", "split", "caption_index"]],
                      tmp / store.CAPTIONS)
        write_json(meta, tmp / store.META)
    work.remove()
    return meta
