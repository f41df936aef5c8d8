"""Typed configuration of the MAC-VR / DiCoSA retrieval head (params.yaml: ``train.model``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: CLIP clamps its learned temperature at 100; a larger initial value would be inert.
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the head that sits on top of (frozen or fine-tuned) CLIP features.

    variant: ``dicosa`` (no tags) or ``macvr`` (visual and/or textual tag concepts).
    embed_dim: D, the width of the CLIP embeddings the head receives.
    num_concepts: K; each concept has d = D / K channels.
    pool_temperature: tau of the text-conditioned frame pooling (3 in the official code).
    pool_masking: ``before_softmax`` excludes padded frames from the softmax (-inf logits,
        weights over real frames sum to 1); ``after_softmax`` is the official code's order
        (softmax over every frame slot, then multiply by the mask, so padding steals weight).
    temporal_layers: depth of the residual temporal transformer (0 = no temporal module, F' = F).
    temporal_heads: attention heads of the temporal transformer.
    max_frames: rows of the frame position embedding (>= frames per video).
    concept_projection: ``chunk`` = contiguous d-wide slices of x (official code);
        ``linear`` = a trainable W_k per concept (paper Eq. 2), shared by all modalities.
    confidence_hidden_ratio: hidden width of the confidence MLP over its input width. The official
        MLPs are twice their input (2): macvr 4d -> 8d -> 1, dicosa 2d -> 4d -> 1, so one value
        serves both variants (and the tag ablations, whose input is 3d).
    use_visual_tags / use_textual_tags: feed the visual (A_v) / textual (A_t) tag concepts to the
        confidence MLP (paper Tab. 4 ablations); an unused modality's input slot is dropped.
    init_logit_scale: initial log of the InfoNCE scale lambda (ln 100 = 4.6052 is pretrained
        CLIP's value, which the official code inherits; ln(1/0.07) = 2.6593 is CLIP's scratch init).
    """

    variant: Literal["dicosa", "macvr"]
    embed_dim: int
    num_concepts: int
    pool_temperature: float
    pool_masking: Literal["before_softmax", "after_softmax"]
    temporal_layers: int
    temporal_heads: int
    max_frames: int
    concept_projection: Literal["chunk", "linear"]
    confidence_hidden_ratio: int
    use_visual_tags: bool
    use_textual_tags: bool
    init_logit_scale: float

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"model config: {msg}")

        need(self.variant in ("dicosa", "macvr"), f"variant must be dicosa or macvr, got {self.variant!r}")
        need(self.embed_dim > 0, f"embed_dim must be > 0, got {self.embed_dim}")
        need(self.num_concepts > 0, f"num_concepts must be > 0, got {self.num_concepts}")
        need(self.embed_dim % self.num_concepts == 0,
             f"embed_dim ({self.embed_dim}) must be divisible by num_concepts ({self.num_concepts})")
        need(self.concept_dim >= 2,
             f"each concept needs >= 2 channels (the concept loss standardises them), "
             f"got embed_dim/num_concepts = {self.concept_dim}")
        need(math.isfinite(self.pool_temperature) and self.pool_temperature > 0,
             f"pool_temperature must be a positive number, got {self.pool_temperature}")
        need(self.pool_masking in ("before_softmax", "after_softmax"),
             f"pool_masking must be before_softmax or after_softmax, got {self.pool_masking!r}")
        need(self.temporal_layers >= 0, f"temporal_layers must be >= 0, got {self.temporal_layers}")
        need(self.temporal_heads > 0 and self.embed_dim % self.temporal_heads == 0,
             f"temporal_heads ({self.temporal_heads}) must be > 0 and divide embed_dim ({self.embed_dim})")
        need(self.max_frames > 0, f"max_frames must be > 0, got {self.max_frames}")
        need(self.concept_projection in ("chunk", "linear"),
             f"concept_projection must be chunk or linear, got {self.concept_projection!r}")
        need(self.confidence_hidden_ratio > 0,
             f"confidence_hidden_ratio must be > 0, got {self.confidence_hidden_ratio}")
        if self.variant == "dicosa":
            need(not (self.use_visual_tags or self.use_textual_tags),
                 "variant dicosa uses no tags: set use_visual_tags and use_textual_tags to false")
        else:
            need(self.use_visual_tags or self.use_textual_tags,
                 "variant macvr needs at least one of use_visual_tags / use_textual_tags "
                 "(with neither it is dicosa: set variant: dicosa)")
        need(math.isfinite(self.init_logit_scale) and self.init_logit_scale <= math.log(MAX_LOGIT_SCALE) + 1e-6,
             f"init_logit_scale must be finite and <= ln({MAX_LOGIT_SCALE:g}) = "
             f"{math.log(MAX_LOGIT_SCALE):.4f} (the scale is clamped there), got {self.init_logit_scale}")

    @property
    def concept_dim(self) -> int:
        """d = D / K, the width of one concept."""
        return self.embed_dim // self.num_concepts

    @property
    def confidence_slots(self) -> tuple[str, ...]:
        """Inputs of the confidence MLP, in the official order [e_t, e_av, e_at, e_v]."""
        slots = ["text"]
        if self.use_visual_tags:
            slots.append("tags_visual")
        if self.use_textual_tags:
            slots.append("tags_textual")
        slots.append("video")
        return tuple(slots)

    @property
    def confidence_hidden(self) -> int:
        """Hidden width H of the confidence MLP."""
        return self.confidence_hidden_ratio * len(self.confidence_slots) * self.concept_dim
