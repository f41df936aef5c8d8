"""Residual temporal transformer over frame features: F' = Transformer(F + pos) + F.

The blocks reuse CLIP's own ``ResidualAttentionBlock`` (same parameter names and maths), so the
official initialisation trick -- copying CLIP text layers 0..L-1 and the text position
embedding into the temporal module -- is an exact state-dict copy.
"""

from __future__ import annotations

import torch
from clip.model import ResidualAttentionBlock
from torch import nn


class TemporalBlock(ResidualAttentionBlock):
    """CLIP's residual attention block plus a key padding mask (CLIP's own has none).

    CLIP's LayerNorm subclass always computes in float32 (for its fp16 weights) and fails with
    float64 parameters; plain LayerNorms with the same parameter names keep the state-dict copy
    exact and let the head run in its own dtype.
    """

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.ln_2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [N, B, D] (sequence first, like CLIP); key_padding_mask: [B, N], True = ignore.
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, key_padding_mask=key_padding_mask)[0]
        return x + self.mlp(self.ln_2(x))


class TemporalTransformer(nn.Module):
    """F' = Transformer(F + pos) + F with padded frames masked as attention keys.

    With ``layers == 0`` the module is the identity (F' = F): no temporal modelling.
    """

    def __init__(self, width: int, layers: int, heads: int, max_frames: int) -> None:
        super().__init__()
        self.width, self.heads, self.max_frames = width, heads, max_frames
        self.position_embedding = nn.Embedding(max_frames, width) if layers > 0 else None
        self.resblocks = nn.ModuleList(TemporalBlock(width, heads) for _ in range(layers))

    @property
    def layers(self) -> int:
        return len(self.resblocks)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames [B, N, D], mask [B, N] (True = real frame) -> F' [B, N, D]."""
        if self.layers == 0:
            return frames
        n = frames.shape[1]
        if n > self.max_frames:
            raise ValueError(f"temporal transformer: {n} frames per video exceed max_frames={self.max_frames}")
        pos = self.position_embedding.weight[:n].to(frames.dtype)
        x = (frames + pos).transpose(0, 1)  # [N, B, D]
        # Padded frames are excluded as keys, so real frames never see them; the padded
        # positions' own outputs are garbage-in/garbage-out and get zero pooling weight later.
        pad = ~mask.bool()
        for block in self.resblocks:
            x = block(x, key_padding_mask=pad)
        return x.transpose(0, 1) + frames


def clip_text_init_problem(temporal: TemporalTransformer, clip_model: nn.Module) -> str | None:
    """Why CLIP's text layers cannot initialise ``temporal`` (None when they can)."""
    if temporal.layers == 0:
        return "the temporal module has no layers"
    text = getattr(clip_model, "transformer", None)
    if text is None or not hasattr(text, "resblocks"):
        return "the CLIP model has no text transformer (expected clip.model.CLIP)"
    if text.width != temporal.width:
        return f"CLIP text width {text.width} != temporal width {temporal.width}"
    if len(text.resblocks) < temporal.layers:
        return f"CLIP has {len(text.resblocks)} text layers, the temporal module needs {temporal.layers}"
    heads = text.resblocks[0].attn.num_heads
    if heads != temporal.heads:
        return f"CLIP text heads {heads} != temporal heads {temporal.heads}"
    if clip_model.positional_embedding.shape[0] < temporal.max_frames:
        return (f"CLIP context length {clip_model.positional_embedding.shape[0]} < "
                f"max_frames {temporal.max_frames}")
    return None


@torch.no_grad()
def init_temporal_from_clip(temporal: TemporalTransformer, clip_model: nn.Module) -> None:
    """Copy CLIP text layers 0..L-1 and the first ``max_frames`` text positions (official trick).

    Raises ValueError naming the mismatch when the shapes do not allow an exact copy; callers
    that accept random init can check :func:`clip_text_init_problem` first.
    """
    problem = clip_text_init_problem(temporal, clip_model)
    if problem is not None:
        raise ValueError(f"cannot initialise the temporal transformer from CLIP: {problem}")
    for mine, theirs in zip(temporal.resblocks, clip_model.transformer.resblocks):
        mine.load_state_dict(theirs.state_dict())
    pos = clip_model.positional_embedding[: temporal.max_frames]
    temporal.position_embedding.weight.copy_(pos.to(temporal.position_embedding.weight.dtype))
