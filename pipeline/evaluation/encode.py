"""Finetune-mode checkpoints: re-encode the evaluated items with the checkpoint's own CLIP.

A head trained end to end expects features from the CLIP it was trained with, not the frozen
backbone's cached features. The items are the same (rows chosen on the features directory's
indexes); frames come from the frames stage, caption texts from ``captions.parquet`` and tags
from ``tags.parquet``, with the inference tag sentence built exactly as the features stage does
(the first M tags, M = the features' ``infer_tags``). Arrays are fp16, like cached features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.backbone.encode import encode_frames, encode_texts
from pipeline.evaluation.items import EvalRows
from pipeline.evaluation.sets import EvalSets, TextSet, VideoSet
from pipeline.features.inputs import load_tags
from pipeline.features.tags import infer_sentence
from pipeline.io import read_parquet


def _lookup(series: pd.Series, ids: Sequence[str], what: str, where: Path | str) -> np.ndarray:
    missing = [i for i in ids if i not in series.index]
    if missing:
        raise ValueError(f"{where}: no {what} for {len(missing)} evaluated items (e.g. {missing[0]!r}); "
                         "the frames/captions inputs do not match the features directory")
    return series.loc[list(ids)].to_numpy()


@torch.no_grad()
def encode_text_list(clip: torch.nn.Module, texts: Sequence[str], batch_size: int, desc: str) -> np.ndarray:
    """CLIP text features fp16 [len(texts), D]."""
    dim = int(clip.text_projection.shape[1])
    out = np.zeros((len(texts), dim), dtype=np.float16)
    for lo in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        out[lo:lo + batch_size] = encode_texts(clip, list(texts[lo:lo + batch_size])).cpu().numpy()
    return out


@torch.no_grad()
def encode_video_rows(clip: torch.nn.Module, frames: np.ndarray, mask: np.ndarray, frame_rows: np.ndarray,
                      batch_size: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Frame features fp16 [V, N, D] (padded slots zero) and the mask [V, N] of ``frame_rows``."""
    n, dim = frames.shape[1], int(clip.text_projection.shape[1])
    feats = np.zeros((len(frame_rows), n, dim), dtype=np.float16)
    masks = np.asarray(mask[frame_rows], dtype=bool)
    per_chunk = max(1, batch_size // n)  # batch_size counts images
    for lo in tqdm(range(0, len(frame_rows), per_chunk), desc=desc, unit="batch", leave=False):
        sel = masks[lo:lo + per_chunk]
        if sel.any():
            pixels = np.asarray(frames[frame_rows[lo:lo + per_chunk]])[sel]
            block = feats[lo:lo + per_chunk]
            block[sel] = encode_frames(clip, pixels).cpu().numpy()
    return feats, masks


def encoded_sets(clip: torch.nn.Module, rows: EvalRows, frames_dir: str | Path, captions_path: str | Path,
                 tags_path: str | Path | None, infer_tags: int, batch_size: int) -> EvalSets:
    """The four evaluation sets encoded by ``clip`` (tags_path None: a head without tag slots)."""
    frames_dir = Path(frames_dir)
    index = read_parquet(frames_dir / "index.parquet", columns=["video_id", "row", "status"])
    ok = index[(index["status"] == "ok") & (index["row"] >= 0)].set_index("video_id")["row"]
    frames = np.load(frames_dir / "clip_frames.npy", mmap_mode="r")
    mask = np.load(frames_dir / "clip_mask.npy", mmap_mode="r")
    texts = read_parquet(captions_path, columns=["caption_id", "text"]).set_index("caption_id")["text"]
    tags = load_tags(tags_path) if tags_path is not None else None

    def videos(ids: list[str], name: str) -> VideoSet:
        frame_rows = _lookup(ok, ids, "decoded frames", frames_dir / "index.parquet").astype(np.int64)
        feats, masks = encode_video_rows(clip, frames, mask, frame_rows, batch_size, f"{name} frames")
        tag_feats = None
        if tags is not None:
            sentences = [infer_sentence(tags["visual"].get(i, []), infer_tags) for i in ids]
            tag_feats = encode_text_list(clip, sentences, batch_size, f"{name} visual tags")
        return VideoSet(feats, masks, tag_feats)

    def captions(ids: list[str], name: str) -> TextSet:
        caption_texts = [str(t) for t in _lookup(texts, ids, "text", captions_path)]
        tag_feats = None
        if tags is not None:
            sentences = [infer_sentence(tags["textual"].get(i, []), infer_tags) for i in ids]
            tag_feats = encode_text_list(clip, sentences, batch_size, f"{name} textual tags")
        return TextSet(encode_text_list(clip, caption_texts, batch_size, f"{name} captions"), tag_feats)

    return EvalSets(test_text=captions(rows.caption_ids, "test"), test_videos=videos(rows.video_ids, "test"),
                    qb_text=captions(rows.qb_caption_ids, "querybank"),
                    qb_videos=videos(rows.qb_video_ids, "querybank"))
