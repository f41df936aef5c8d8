"""Residual temporal transformer over frame features: F' = Transformer(F + pos) + F.

Its blocks are the project's own, laid out like CLIP's text blocks (same parameter names:
``attn`` = ``nn.MultiheadAttention``, ``ln_1``, ``mlp.c_fc`` / QuickGELU / ``mlp.c_proj``, ``ln_2``)
so that the official initialisation -- copying a backbone's first text layers and text
position table into the temporal module -- is an exact state-dict copy, whatever library
implements the backbone (:meth:`pipeline.backbone.base.Backbone.text_block_states`).

The LayerNorm epsilon is a parameter: the official DiCoSA / MAC-VR temporal transformer uses
1e-12 (BERT style), CLIP's own blocks 1e-5.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x * sigmoid(1.702 x) (also the official temporal blocks')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TemporalBlock(nn.Module):
    """Pre-norm residual attention block with a key padding mask.

    Padded frames are excluded as attention keys with an additive -1e6 bias, as the official
    code does: exp(-1e6) underflows to exactly 0, so real frames never see padding, and a padded
    query still attends to the real frames (its output feeds the pooling softmax under the
    official masking order).
    """

    MASK_BIAS = -1.0e6

    def __init__(self, d_model: int, n_head: int, ln_eps: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model, eps=ln_eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = nn.LayerNorm(d_model, eps=ln_eps)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, B, D] (sequence first, like CLIP); pad: [B, N] bool, True = padded frame."""
        bias = None
        if pad is not None:
            # [B * heads, N, N] additive bias on the keys (rows: queries, columns: keys).
            b, n = pad.shape
            bias = torch.zeros(b, n, dtype=x.dtype, device=x.device).masked_fill(pad, self.MASK_BIAS)
            bias = bias[:, None, :].expand(b, n, n).repeat_interleave(self.attn.num_heads, dim=0)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=bias)[0]
        return x + self.mlp(self.ln_2(x))


class TemporalTransformer(nn.Module):
    """F' = Transformer(F + pos) + F with padded frames masked as attention keys.

    With ``layers == 0`` the module is the identity (F' = F): no temporal modelling.
    """

    def __init__(self, width: int, layers: int, heads: int, max_frames: int, ln_eps: float) -> None:
        super().__init__()
        self.width, self.heads, self.max_frames = width, heads, max_frames
        self.position_embedding = nn.Embedding(max_frames, width) if layers > 0 else None
        self.resblocks = nn.ModuleList(TemporalBlock(width, heads, ln_eps) for _ in range(layers))

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
        # Padded frames are excluded as keys, so real frames never see them; what the padded
        # positions output depends on what their slots hold (zeros, or the official blank-frame
        # embedding) and matters only under the official pooling order (masked after softmax).
        pad = ~mask.bool()
        for block in self.resblocks:
            x = block(x, pad)
        return x.transpose(0, 1) + frames


def backbone_init_problem(temporal: TemporalTransformer, backbone) -> str | None:
    """Why ``backbone``'s text layers cannot initialise ``temporal`` (None when they can)."""
    if temporal.layers == 0:
        return "the temporal module has no layers"
    try:
        width, heads = backbone.text_width, backbone.text_heads
        backbone.text_block_states(temporal.layers)
        backbone.text_positions(temporal.max_frames)
    except ValueError as err:
        return str(err)
    if width != temporal.width:
        return f"the backbone's text width {width} != temporal width {temporal.width}"
    if heads != temporal.heads:
        return f"the backbone's text heads {heads} != temporal heads {temporal.heads}"
    return None


@torch.no_grad()
def init_temporal_from_backbone(temporal: TemporalTransformer, backbone) -> None:
    """Copy the backbone's text layers 0..L-1 and first ``max_frames`` text positions (the
    official trick). ValueError naming the mismatch when the shapes do not allow an exact copy."""
    problem = backbone_init_problem(temporal, backbone)
    if problem is not None:
        raise ValueError(f"cannot initialise the temporal transformer from the backbone: {problem}")
    for mine, theirs in zip(temporal.resblocks, backbone.text_block_states(temporal.layers)):
        mine.load_state_dict(theirs, strict=True)
    pos = backbone.text_positions(temporal.max_frames)
    temporal.position_embedding.weight.copy_(pos.to(temporal.position_embedding.weight.dtype))
