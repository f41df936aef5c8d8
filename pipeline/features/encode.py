"""Resumable frozen-backbone encoding of frames and texts into a :class:`WorkDir`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipeline.backbone.base import Backbone
from pipeline.backbone.encode import padded_frame_features
from pipeline.features.workdir import WorkDir


@torch.inference_mode()
def encode_video_frames(backbone: Backbone, frames: np.ndarray, mask: np.ndarray, frame_rows: np.ndarray,
                        padding: str, work: WorkDir, batch_size: int, progress: bool = True) -> np.memmap:
    """``frames.npy`` fp16 ``[V, N_v, D]`` in ``work``: row v holds the features of
    ``frames[frame_rows[v]]``; padded slots hold zeros or the blank-frame embedding (``padding``)."""
    num, n_v = len(frame_rows), frames.shape[1]
    out = work.array("frames", (num, n_v, backbone.embed_dim), np.float16)
    per_chunk = max(1, batch_size // n_v)  # batch_size counts images
    start = work.done("frames")
    bar = tqdm(total=num, initial=start, desc="frame features", unit="video", disable=not progress)
    for lo in range(start, num, per_chunk):
        hi = min(lo + per_chunk, num)
        rows = frame_rows[lo:hi]
        chunk = np.asarray(frames[rows])  # one contiguous mmap read
        out[lo:hi] = padded_frame_features(backbone, chunk, np.asarray(mask[rows], dtype=bool),
                                           padding).cpu().numpy().astype(np.float16)
        work.mark("frames", hi, out)
        bar.update(hi - lo)
    bar.close()
    return out


@torch.inference_mode()
def encode_unique_texts(backbone: Backbone, texts: Sequence[str], max_words: int, work: WorkDir,
                        batch_size: int, progress: bool = True) -> tuple[np.memmap, np.memmap]:
    """``texts.npy`` fp16 ``[U, D]`` and ``truncated.npy`` bool ``[U]`` in ``work``."""
    out = work.array("texts", (len(texts), backbone.embed_dim), np.float16)
    truncated = work.array("truncated", (len(texts),), np.bool_, key="texts")
    start = work.done("texts")
    bar = tqdm(total=len(texts), initial=start, desc="text features", unit="text", disable=not progress)
    for lo in range(start, len(texts), batch_size):
        hi = min(lo + batch_size, len(texts))
        batch = backbone.tokenize(texts[lo:hi], max_words)
        out[lo:hi] = backbone.encode_text(batch.ids, batch.mask).cpu().numpy().astype(np.float16)
        truncated[lo:hi] = batch.truncated
        work.mark("texts", hi, out, truncated)
        bar.update(hi - lo)
    bar.close()
    return out, truncated
