"""Batched encoding with a :class:`~pipeline.backbone.base.Backbone`: texts and videos' frames.

Shared by the features stage (frozen backbone), the re-encoding of finetune-mode checkpoints
(evaluation, report, search) and fine-tuning itself, so padded frame slots and text lengths are
handled the same way everywhere:

- texts are cut to ``max_words`` tokens (``text.max_words``);
- a padded frame slot holds zeros (``padding: zero``) or the backbone's embedding of an all-zero
  normalised image (``padding: blank``, the official loader's content), as the frames directory
  records (:attr:`pipeline.frames.store.FrameStore.padding`).

The encoders do not switch off autograd (fine-tuning needs it): wrap feature extraction in
``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipeline.backbone.base import Backbone


def padded_frame_features(backbone: Backbone, frames: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor,
                          padding: str) -> torch.Tensor:
    """Features ``[V, N, D]`` (float32) of uint8 frames ``[V, N, S, S, 3]`` with mask ``[V, N]``.

    Only real frames go through the image tower; padded slots get zeros or the blank-frame
    embedding (computed once per call).
    """
    if padding not in ("zero", "blank"):
        raise ValueError(f"padding must be zero or blank, got {padding!r}")
    frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    mask = torch.as_tensor(np.asarray(mask, dtype=bool) if not isinstance(mask, torch.Tensor) else mask).bool()
    if mask.shape != frames.shape[:2]:
        raise ValueError(f"frame mask {tuple(mask.shape)} does not match frames {tuple(frames.shape[:2])}")
    mask = mask.to(backbone.device)
    real = backbone.encode_frames(frames.to(backbone.device)[mask]) if bool(mask.any()) else None
    dim = backbone.embed_dim
    out = torch.zeros(*mask.shape, dim, device=backbone.device)
    if padding == "blank" and not bool(mask.all()):
        out = out + backbone.blank_frame_embedding()  # broadcast, keeps autograd for fine-tuning
    if real is not None:
        out = out.masked_scatter(mask[..., None], real)
    return out


@torch.no_grad()
def encode_text_array(backbone: Backbone, texts: Sequence[str], max_words: int, batch_size: int,
                      desc: str = "texts", progress: bool = False, dtype: type = np.float16
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Text features ``[len(texts), D]`` (fp16 as the features stage stores them; float32 where
    items are scored straight away) and a bool ``[len(texts)]`` of truncated texts."""
    out = np.zeros((len(texts), backbone.embed_dim), dtype=dtype)
    truncated = np.zeros(len(texts), dtype=bool)
    for lo in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False, disable=not progress):
        batch = backbone.tokenize(list(texts[lo:lo + batch_size]), max_words)
        out[lo:lo + batch_size] = backbone.encode_text(batch.ids, batch.mask).cpu().numpy()
        truncated[lo:lo + batch_size] = batch.truncated
    return out, truncated


@torch.no_grad()
def encode_video_array(backbone: Backbone, frames: np.ndarray, mask: np.ndarray, rows: np.ndarray, padding: str,
                       batch_size: int, desc: str = "frames", progress: bool = False, dtype: type = np.float16
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Frame features ``[len(rows), N, D]`` (``dtype``: see :func:`encode_text_array`) and masks of
    videos ``rows`` of a frames store's arrays (``batch_size`` counts images)."""
    rows = np.asarray(rows, dtype=np.int64)
    n = frames.shape[1]
    feats = np.zeros((len(rows), n, backbone.embed_dim), dtype=dtype)
    masks = np.asarray(mask[rows], dtype=bool) if len(rows) else np.zeros((0, n), dtype=bool)
    per_chunk = max(1, batch_size // n)
    for lo in tqdm(range(0, len(rows), per_chunk), desc=desc, unit="batch", leave=False, disable=not progress):
        chunk = rows[lo:lo + per_chunk]
        feats[lo:lo + len(chunk)] = padded_frame_features(
            backbone, np.asarray(frames[chunk]), masks[lo:lo + len(chunk)], padding).cpu().numpy()
    return feats, masks
