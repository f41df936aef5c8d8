"""Latent concepts: split a D-wide embedding into K concepts of d = D / K channels."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class ConceptProjection(nn.Module):
    """x [..., D] -> e [..., K, d].

    ``chunk`` (official code): contiguous slices, e^k = x[k*d:(k+1)*d], no parameters.
    ``linear`` (paper Eq. 2): e^k = W_k x with a trainable W_k per concept, one projection shared
    by text, tags and video so that concept k means the same subspace in every modality. W is
    initialised to the identity, so training starts from the ``chunk`` split.
    Both are linear maps, which the fast scorer relies on (pooling commutes with them).
    """

    def __init__(self, embed_dim: int, num_concepts: int, mode: Literal["chunk", "linear"]) -> None:
        super().__init__()
        if embed_dim % num_concepts:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_concepts {num_concepts}")
        self.embed_dim, self.num_concepts, self.mode = embed_dim, num_concepts, mode
        self.concept_dim = embed_dim // num_concepts
        if mode == "linear":
            self.proj = nn.Linear(embed_dim, embed_dim, bias=False)
            self.reset_parameters()
        elif mode == "chunk":
            self.proj = None
        else:
            raise ValueError(f"unknown concept projection {mode!r} (expected chunk or linear)")

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.proj is not None:
            self.proj.weight.copy_(torch.eye(self.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"concepts: expected last dim {self.embed_dim}, got shape {tuple(x.shape)}")
        if self.proj is not None:
            x = self.proj(x)
        return x.unflatten(-1, (self.num_concepts, self.concept_dim))
