"""The features stage: frozen backbone features of frames, captions and tag sentences.

Long runs are resumable: arrays are filled in a work directory beside the output
(``.<out>.work``) with a progress marker, so a killed run continues where it stopped; the
finished directory then replaces ``out`` whole (atomic swap). Each distinct text (caption or
tag sentence) is encoded once and gathered into the per-row arrays at the end.
"""

from __future__ import annotations

import hashlib
import os
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backbone.io import file_sha256, load_backbone
from pipeline.config import to_dict
from pipeline.device import resolve_device
from pipeline.features import store
from pipeline.features.config import FeaturesConfig
from pipeline.features.encode import encode_unique_texts, encode_video_frames
from pipeline.features.inputs import FeatureInputs, load_inputs
from pipeline.features.workdir import WorkDir
from pipeline.frames.store import FrameStore
from pipeline.io import atomic_dir, load_npy, write_json, write_parquet
from pipeline.sharding import Shard, block, run_sharded
from pipeline.tags.sentences import PREFIX, caption_draws, first_caption, infer_sentence, train_sentences
from pipeline.text import TextConfig

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
        if cfg.auxiliary.of(modality) == "captions":  # whole sentences: one random caption per draw
            train = [s for item, t in zip(ids, tags) for s in caption_draws(t, r, seed, modality, item)]
            infer = [first_caption(t) for t in tags]
        else:
            train = [s for item, t in zip(ids, tags) for s in train_sentences(t, r, n, seed, modality, item)]
            infer = [infer_sentence(t, m) for t in tags]
        idx[f"tags_{modality}_train"] = table.add(train).reshape(len(ids), r)
        idx[f"tags_{modality}_infer"] = table.add(infer)
    return table, idx


def _aux_captions(cfg: FeaturesConfig, path: str | Path | None) -> dict[str, dict[str, list[str]]]:
    """The auxiliary captions of the modalities that read them instead of tags."""
    wanted = [m for m in ("visual", "textual") if cfg.auxiliary.of(m) == "captions"]
    if not wanted:
        return {}
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"{path}: features.auxiliary reads auxiliary captions for {wanted}, "
                                f"but the clean_captions output is missing (did it run?)")
    from pipeline.aux_captions.clean import read_captions_table

    table = read_captions_table(path)
    for modality in wanted:
        if not table.of(modality):
            raise ValueError(f"{path}: no {modality} auxiliary captions; features.auxiliary.{modality} "
                             f"is captions, so caption_{'video' if modality == 'visual' else 'text'} "
                             f"must generate them (rerun dvc repro)")
    return {m: table.of(m) for m in wanted}


def _fingerprint(backbone_sha: str, frames: FrameStore, inputs: FeatureInputs,
                 texts: list[str], cfg: FeaturesConfig, max_words: int) -> str:
    """What the work arrays depend on (batch size and device only change rounding)."""
    h = hashlib.sha256()
    frames_file = frames.path / "clip_frames.npy"
    stat = frames_file.stat()
    head = {"backbone": backbone_sha, "frames": [str(frames_file.resolve()), stat.st_size, stat.st_mtime_ns],
            "padding": frames.padding, "max_words": max_words,
            "frame_rows": inputs.videos["frame_row"].tolist(), "draws": cfg.train_tag_draws,
            "per_draw": cfg.train_tags_per_draw, "infer": cfg.infer_tags, "seed": cfg.seed,
            "tag_control": cfg.tag_control, "auxiliary": to_dict(cfg.auxiliary)}
    h.update(json.dumps(head, sort_keys=True).encode())
    for text in texts:
        h.update(text.encode("utf-8") + b"\0")
    return h.hexdigest()


def _gather(src: np.ndarray, index: np.ndarray, dst: Path) -> None:
    """``dst.npy = src[index]`` (index of any shape), copied in bounded chunks."""
    flat = index.reshape(-1)
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=src.dtype,
                                    shape=(*index.shape, src.shape[1]))
    if out.size == 0:  # features.encode: false (zero-width) or no rows
        del out
        return
    view = out.reshape(-1, src.shape[1])
    for lo in range(0, len(flat), GATHER_ROWS):
        sel = flat[lo: lo + GATHER_ROWS]
        view[lo: lo + len(sel)] = src[sel]
    out.flush()
    del out


def extract_features(cfg: FeaturesConfig, text: TextConfig, backbone: str | Path, frames_dir: str | Path,
                     videos_path: str | Path, captions_path: str | Path, tags_path: str | Path,
                     out: str | Path, progress: bool = True, shard: Shard | None = None,
                     oracle=None, aux_captions_path: str | Path | None = None) -> dict[str, Any] | None:
    """Write the features directory ``out`` (see :mod:`pipeline.features.store`); return its meta.

    ``shard`` (under torchrun, see :mod:`pipeline.sharding`): each worker encodes a contiguous block
    of the videos and of the distinct texts, cut on encoding-batch boundaries so every batch is the
    one a single process encodes; rank 0 concatenates the parts and writes the directory (bit-
    identical to a single process on the same device type); other ranks return None.

    ``oracle(video_ids) -> tag lists``: the visual tags of ``tag_control: oracle``
    (:func:`pipeline.features.tag_control.oracle_visual_tags` over the synthetic ground truth).
    ``aux_captions_path``: ``captions.parquet`` of the clean_captions stage, read for the
    modalities ``cfg.auxiliary`` switches to captions.
    """
    out = Path(out)
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    frames = FrameStore(frames_dir)
    inputs = load_inputs(frames, videos_path, captions_path, tags_path, cfg.tag_control, cfg.seed, oracle,
                         _aux_captions(cfg, aux_captions_path))
    table, idx = text_indices(inputs, cfg)
    backbone_sha = file_sha256(backbone)
    if not cfg.encode:
        if shard is not None and shard.rank:
            return None
        log.info("features.encode is false: writing the index of %d videos and %d captions, no features",
                 len(inputs.videos), len(inputs.captions))
        return _write(cfg, text, out, frames, inputs, idx, table,
                      np.zeros((len(inputs.videos), frames.num_frames, 0), np.float16),
                      np.zeros((len(table.texts), 0), np.float16), np.zeros(len(table.texts), bool),
                      backbone_sha, None)
    fingerprint = _fingerprint(backbone_sha, frames, inputs, table.texts, cfg, text.max_words)
    device = resolve_device(cfg.device, "features.device", shard.local_rank if shard is not None else 0)
    model = load_backbone(backbone, device)
    frame_rows = inputs.videos["frame_row"].to_numpy()
    per_chunk = max(1, cfg.batch_size // frames.num_frames)  # videos per frame batch (batch_size counts images)
    log.info("encoding %d videos x %d frames (padding: %s) and %d distinct texts (max %d tokens) on %s",
             len(frame_rows), frames.num_frames, frames.padding, len(table.texts), text.max_words, device)

    def encode(work: WorkDir, videos: range, texts: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if work.resumed:
            log.info("resuming from %s", work.path)
        video_feats = encode_video_frames(model, frames.clip_frames, frames.clip_mask, frame_rows[videos.start:videos.stop],
                                          frames.padding, work, cfg.batch_size, progress)
        text_feats, truncated = encode_unique_texts(model, table.texts[texts.start:texts.stop], text.max_words, work,
                                                    cfg.batch_size, progress)
        return video_feats, text_feats, truncated

    def write(video_feats: np.ndarray, text_feats: np.ndarray, truncated: np.ndarray) -> dict[str, Any]:
        return _write(cfg, text, out, frames, inputs, idx, table, video_feats, text_feats, truncated, backbone_sha,
                      model)

    if shard is None or not shard.distributed:
        work = WorkDir(out.with_name(f".{out.name}.work"), fingerprint)
        meta = write(*encode(work, range(len(frame_rows)), range(len(table.texts))))
        work.remove()
        return meta
    videos = block(len(frame_rows), shard, per_chunk)
    texts = block(len(table.texts), shard, cfg.batch_size)

    def work_part(part: Path) -> None:
        # Each rank's part is a resumable work directory of its own (a rerun continues it).
        encode(WorkDir(part, f"{fingerprint}:{videos}:{texts}"), videos, texts)

    def merge(parts: list[Path]) -> dict[str, Any]:
        arrays = [(load_npy(p / "frames.npy", mmap_mode="r"), load_npy(p / "texts.npy", mmap_mode="r"),
                   load_npy(p / "truncated.npy", mmap_mode="r")) for p in parts]
        return write(*(np.concatenate([a[i] for a in arrays]) for i in range(3)))

    return run_sharded(shard, out, work_part, merge, keep_parts=True)


def _write(cfg: FeaturesConfig, text: TextConfig, out: Path, frames: FrameStore, inputs: FeatureInputs,
           idx: dict[str, np.ndarray], table: TextTable, video_feats: np.ndarray, texts: np.ndarray,
           truncated: np.ndarray, backbone_sha: str, model) -> dict[str, Any]:
    """The features directory from the encoded videos and distinct texts (atomically)."""
    if truncated.any():
        log.warning("%d of %d distinct texts were longer than text.max_words = %d tokens and were "
                    "cut", int(truncated.sum()), len(truncated), text.max_words)
    frame_rows = inputs.videos["frame_row"].to_numpy()
    meta = {
        "format": store.FORMAT, "version": store.VERSION, "dim": int(texts.shape[1]),
        "num_frames": frames.num_frames, **to_dict(cfg), "sentence_prefix": PREFIX,
        "max_words": text.max_words, "padding": frames.padding,
        "backbone_sha256": backbone_sha, "backbone_kind": model.kind if model is not None else None,
        "backbone_arch": model.arch() if model is not None else None, "encoded": model is not None,
        "counts": {**inputs.counts, "distinct_texts": len(table.texts),
                   "truncated_texts": int(truncated.sum())},
        "splits": {s: {"videos": int((inputs.videos["split"] == s).sum()),
                       "captions": int((inputs.captions["split"] == s).sum())}
                   for s in sorted(set(inputs.videos["split"]))},
    }
    del meta["device"], meta["batch_size"], meta["torch_threads"]  # how it ran, not what it is
    if not cfg.auxiliary.any_captions:
        del meta["auxiliary"]  # the method's own inputs: the meta of a tags-only run is as before
    with atomic_dir(out) as tmp:
        if isinstance(video_feats, np.memmap) and video_feats.filename:  # a work file: moved, not copied
            video_feats.flush()
            os.replace(video_feats.filename, tmp / "frames.npy")
        else:
            np.save(tmp / "frames.npy", np.ascontiguousarray(video_feats))
        np.save(tmp / "frame_mask.npy", np.ascontiguousarray(frames.clip_mask[frame_rows], dtype=bool))
        for name, index in idx.items():
            _gather(texts, index, tmp / f"{name}.npy")
        write_parquet(inputs.videos[["video_id", "row", "split"]], tmp / store.VIDEOS)
        write_parquet(inputs.captions[["caption_id", "video_id", "row", "split", "caption_index"]],
                      tmp / store.CAPTIONS)
        write_json(meta, tmp / store.META)
    return meta
