"""Text-conditioned frame pooling: a_ijn = softmax_n(<T_i, F'_jn> / tau), V_ij = sum_n a_ijn F'_jn.

Features are used unnormalised, as in the official code (the logit scale is then set by tau and
the feature norms).
"""

from __future__ import annotations

from typing import Literal

import torch

PoolMasking = Literal["before_softmax", "after_softmax"]


def masked_pool_softmax(logits: torch.Tensor, mask: torch.Tensor, masking: PoolMasking) -> torch.Tensor:
    """Pooling weights from logits [..., Bv, N] and a frame mask [Bv, N] (True = real frame).

    ``before_softmax``: padded frames get -inf logits, hence weight exactly 0, and the weights of
    the real frames sum to 1 (the correct masked softmax; the default).
    ``after_softmax``: the official code's order: softmax over all N slots, then zero the padded
    slots (the real weights then sum to < 1 and depend on the padded slots' logits).
    """
    mask = mask.bool()
    if masking == "before_softmax":
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    if masking == "after_softmax":
        return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)
    raise ValueError(f"unknown pool masking {masking!r} (expected before_softmax or after_softmax)")


def pool_weights(text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, temperature: float,
                 masking: PoolMasking) -> torch.Tensor:
    """a [Bt, Bv, N] for text [Bt, D] against every video's frames [Bv, N, D]."""
    logits = torch.einsum("td,vnd->tvn", text, frames) / temperature
    return masked_pool_softmax(logits, mask, masking)


def pool_frames(weights: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """V [Bt, Bv, D] = sum_n a[t, v, n] F'[v, n]."""
    return torch.einsum("tvn,vnd->tvd", weights, frames)


def check_mask(mask: torch.Tensor, what: str = "frame mask") -> None:
    """Every video needs a real frame: an all-padded row has no defined pooling."""
    if mask.ndim != 2:
        raise ValueError(f"{what}: expected [videos, frames], got shape {tuple(mask.shape)}")
    empty = ~mask.bool().any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what}: videos at rows {rows} have no real frame")
