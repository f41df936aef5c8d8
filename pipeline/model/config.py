"""Typed configuration of the MAC-VR / DiCoSA retrieval head.

``ModelParams`` is what ``params.yaml: train.model`` sets (plus ``tags``, which each variant sets:
see :mod:`pipeline.variants`); ``ModelConfig`` adds the two sizes read from the upstream
artifacts (the feature width and the number of frame slots), so no params key repeats them.
Checkpoints store the resolved ``ModelConfig``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

#: CLIP clamps its learned temperature at 100 (after each optimiser step, not in the loss).
MAX_LOGIT_SCALE = 100.0
TAG_MODALITIES = ("visual", "textual")


@dataclass(frozen=True)
class ModelParams:
    """Architecture knobs of the head.

    tags: tag modalities the confidence MLP sees, a subset of [visual, textual] in that order
        (set per variant: [] is DiCoSA, [visual, textual] MAC-VR, one of them the Tab. 4 ablations).
    num_concepts: K; each concept has d = D / K channels.
    pool_temperature: tau of the text-conditioned frame pooling (3 in the official code).
    pool_masking: ``before_softmax`` excludes padded frames from the softmax (-inf logits,
        weights over real frames sum to 1); ``after_softmax`` is the official code's order
        (softmax over every frame slot, then multiply by the mask, so padding steals weight).
    temporal_layers: depth of the residual temporal transformer (0 = no temporal module, F' = F).
    temporal_heads: attention heads of the temporal transformer.
    temporal_ln_eps: LayerNorm epsilon of the temporal blocks (official: 1e-12).
    concept_projection: ``chunk`` = contiguous d-wide slices of x (official code);
        ``linear`` = a trainable W_k per concept (paper Eq. 2), shared by all modalities.
    confidence_hidden_ratio: hidden width of the confidence MLP over its input width. The official
        MLPs are twice their input (2): macvr 4d -> 8d -> 1, dicosa 2d -> 4d -> 1.
    init_logit_scale: initial log of the InfoNCE scale lambda when the head owns it
        (``train.logit_scale: head``); ln 100 = 4.6052 is pretrained CLIP's value.
    """

    tags: tuple[str, ...]
    num_concepts: int
    pool_temperature: float
    pool_masking: Literal["before_softmax", "after_softmax"]
    temporal_layers: int
    temporal_heads: int
    temporal_ln_eps: float
    concept_projection: Literal["chunk", "linear"]
    confidence_hidden_ratio: int
    init_logit_scale: float

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"model config: {msg}")

        tags = tuple(self.tags)
        object.__setattr__(self, "tags", tags)  # lists from YAML become a tuple
        need(all(t in TAG_MODALITIES for t in tags) and len(set(tags)) == len(tags),
             f"tags must be distinct entries of {list(TAG_MODALITIES)}, got {list(tags)}")
        need(list(tags) == [t for t in TAG_MODALITIES if t in tags],
             f"tags must be listed in the order {list(TAG_MODALITIES)}, got {list(tags)}")
        need(self.num_concepts > 0, f"num_concepts must be > 0, got {self.num_concepts}")
        need(math.isfinite(self.pool_temperature) and self.pool_temperature > 0,
             f"pool_temperature must be a positive number, got {self.pool_temperature}")
        need(self.pool_masking in ("before_softmax", "after_softmax"),
             f"pool_masking must be before_softmax or after_softmax, got {self.pool_masking!r}")
        need(self.temporal_layers >= 0, f"temporal_layers must be >= 0, got {self.temporal_layers}")
        need(self.temporal_heads > 0, f"temporal_heads must be > 0, got {self.temporal_heads}")
        need(math.isfinite(self.temporal_ln_eps) and self.temporal_ln_eps > 0,
             f"temporal_ln_eps must be > 0, got {self.temporal_ln_eps}")
        need(self.concept_projection in ("chunk", "linear"),
             f"concept_projection must be chunk or linear, got {self.concept_projection!r}")
        need(self.confidence_hidden_ratio > 0,
             f"confidence_hidden_ratio must be > 0, got {self.confidence_hidden_ratio}")
        need(math.isfinite(self.init_logit_scale) and self.init_logit_scale <= math.log(MAX_LOGIT_SCALE) + 1e-6,
             f"init_logit_scale must be finite and <= ln({MAX_LOGIT_SCALE:g}) = "
             f"{math.log(MAX_LOGIT_SCALE):.4f} (the scale is clamped there), got {self.init_logit_scale}")

    @property
    def use_visual_tags(self) -> bool:
        return "visual" in self.tags

    @property
    def use_textual_tags(self) -> bool:
        return "textual" in self.tags

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


@dataclass(frozen=True)
class ModelConfig(ModelParams):
    """:class:`ModelParams` plus the sizes the upstream artifacts fix.

    embed_dim: D, the width of the backbone embeddings the head receives (from the features
        directory, or the backbone in finetune mode).
    max_frames: frame slots per video, the rows of the frame position embedding (from the
        frames / features directory: ``frames.num_frames``).
    """

    embed_dim: int
    max_frames: int

    def __post_init__(self) -> None:
        super().__post_init__()

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"model config: {msg}")

        need(self.embed_dim > 0, f"embed_dim must be > 0, got {self.embed_dim}")
        need(self.embed_dim % self.num_concepts == 0,
             f"the feature width D={self.embed_dim} must be divisible by num_concepts ({self.num_concepts})")
        need(self.concept_dim >= 2,
             f"each concept needs >= 2 channels (the concept loss standardises them), "
             f"got D / num_concepts = {self.concept_dim}")
        need(self.embed_dim % self.temporal_heads == 0,
             f"temporal_heads ({self.temporal_heads}) must divide the feature width D={self.embed_dim}")
        need(self.max_frames > 0, f"max_frames must be > 0, got {self.max_frames}")

    @classmethod
    def resolve(cls, params: ModelParams, embed_dim: int, max_frames: int) -> "ModelConfig":
        return cls(**asdict(params), embed_dim=embed_dim, max_frames=max_frames)

    @property
    def concept_dim(self) -> int:
        """d = D / K, the width of one concept."""
        return self.embed_dim // self.num_concepts

    @property
    def confidence_hidden(self) -> int:
        """Hidden width H of the confidence MLP."""
        return self.confidence_hidden_ratio * len(self.confidence_slots) * self.concept_dim
