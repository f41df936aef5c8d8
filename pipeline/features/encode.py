"""Resumable frozen-CLIP encoding of frames and texts into a :class:`WorkDir`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipeline.backbone.encode import encode_frames, encode_tokens, tokenize
from pipeline.features.workdir import WorkDir



@torch.inference_mode()
def encode_video_frames(model: torch.nn.Module, frames: np.ndarray, mask: np.ndarray,
                        frame_rows: np.ndarray, work: WorkDir, batch_size: int,
                        progress: bool = True) -> np.memmap:
    """``frames.npy`` fp16 ``[V, N_v, D]`` in ``work``: row v holds the features of
    ``frames[frame_rows[v]]``; padded frames (mask False) stay exactly zero."""
    num, n_v = len(frame_rows), frames.shape[1]
    dim = int(model.text_projection.shape[1])
    out = work.array("frames", (num, n_v, dim), np.float16)
    per_chunk = max(1, batch_size // n_v)  # batch_size counts images
    start = work.done("frames")
    bar = tqdm(total=num, initial=start, desc="frame features", unit="video", disable=not progress)
    for lo in range(start, num, per_chunk):
        hi = min(lo + per_chunk, num)
        rows = frame_rows[lo:hi]
        sel = np.asarray(mask[rows], dtype=bool)
        chunk = np.zeros((hi - lo, n_v, dim), dtype=np.float16)
        if sel.any():
            real = np.asarray(frames[rows])[sel]  # one contiguous mmap read, then the real frames
            chunk[sel] = encode_frames(model, real).cpu().numpy().astype(np.float16)
        out[lo:hi] = chunk
        work.mark("frames", hi, out)
        bar.update(hi - lo)
    bar.close()
    return out


@torch.inference_mode()
def encode_unique_texts(model: torch.nn.Module, texts: Sequence[str], work: WorkDir,
                        batch_size: int, progress: bool = True) -> tuple[np.memmap, np.memmap]:
    """``texts.npy`` fp16 ``[U, D]`` and ``truncated.npy`` bool ``[U]`` in ``work``."""
    dim = int(model.text_projection.shape[1])
    out = work.array("texts", (len(texts), dim), np.float16)
    truncated = work.array("truncated", (len(texts),), np.bool_, key="texts")
    start = work.done("texts")
    bar = tqdm(total=len(texts), initial=start, desc="text features", unit="text",
               disable=not progress)
    for lo in range(start, len(texts), batch_size):
        hi = min(lo + batch_size, len(texts))
        tokens, cut = tokenize(texts[lo:hi], model.context_length)
        out[lo:hi] = encode_tokens(model, tokens).cpu().numpy().astype(np.float16)
        truncated[lo:hi] = cut
        work.mark("texts", hi, out, truncated)
        bar.update(hi - lo)
    bar.close()
    return out, truncated
