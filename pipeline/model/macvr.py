"""The MAC-VR / DiCoSA retrieval head on CLIP features (DESIGN.md, "The model").

Inputs are CLIP embeddings from wherever they come from (cached frozen features or a CLIP
encoder fine-tuned in front): caption T [Bt, D], frames F [Bv, N, D] with a mask, visual tag
sentence A_v [Bv, D] (tags of the video) and textual tag sentence A_t [Bt, D] (tags of the
caption). The score of caption i and video j is

    s_ij = sum_k w_ijk cos(e_t^k(i), e_v^k(i, j)),   w_ijk = MLP([e_t^k(i); e_av^k(j); e_at^k(i); e_v^k(i, j)])

where e^k are the K concepts of T, A_v, A_t and of the caption-conditioned pooled video V_ij.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.model.concepts import ConceptProjection
from pipeline.model.confidence import ConfidenceMLP
from pipeline.model.config import ModelConfig
from pipeline.model.pooling import check_mask, pool_frames, pool_weights
from pipeline.model.temporal import TemporalTransformer, init_temporal_from_backbone


@dataclass
class PairScores:
    """Everything the direct (explicit) pairwise computation produces, for Bt captions x Bv videos."""

    similarity: torch.Tensor      # [Bt, Bv]
    confidence: torch.Tensor      # [Bt, Bv, K] w_ijk (unnormalised)
    concept_cosine: torch.Tensor  # [Bt, Bv, K] cos(e_t^k(i), e_v^k(i, j))
    pool_weights: torch.Tensor    # [Bt, Bv, N] a_ijn
    text_concepts: torch.Tensor   # [Bt, K, d]
    video_concepts: torch.Tensor  # [Bt, Bv, K, d] e_v^k(i, j)
    visual_tag_concepts: torch.Tensor | None   # [Bv, K, d]
    textual_tag_concepts: torch.Tensor | None  # [Bt, K, d]


@dataclass
class ModelOutput:
    """Named outputs of a training forward over B matched pairs (pair b = caption b, video b)."""

    similarity: torch.Tensor      # [B, B]: captions x videos, matched pairs on the diagonal
    logit_scale: torch.Tensor     # scalar, log of lambda (the head's, or the backbone's own)
    text_concepts: torch.Tensor   # [B, K, d] e_t
    video_concepts: torch.Tensor  # [B, K, d] e_v(b, b): each caption pooling its own video
    visual_tag_concepts: torch.Tensor | None   # [B, K, d] e_av (None without visual tags)
    textual_tag_concepts: torch.Tensor | None  # [B, K, d] e_at (None without textual tags)
    confidence: torch.Tensor      # [B, B, K]
    concept_cosine: torch.Tensor  # [B, B, K]
    pool_weights: torch.Tensor    # [B, B, N]


class MacVR(nn.Module):
    """Temporal transformer + text-conditioned pooling + concepts + confidence-weighted score.

    With ``tags: []`` it is DiCoSA's head (the MLP sees [e_t; e_v]); MAC-VR adds the tag slots.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.temporal = TemporalTransformer(config.embed_dim, config.temporal_layers,
                                            config.temporal_heads, config.max_frames, config.temporal_ln_eps)
        self.concepts = ConceptProjection(config.embed_dim, config.num_concepts, config.concept_projection)
        self.confidence = ConfidenceMLP(config.confidence_slots, config.concept_dim, config.confidence_hidden)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official init: Linear/Embedding weights N(0, 0.02), zero biases, unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.concepts.reset_parameters()
        self.logit_scale.fill_(float(self.config.init_logit_scale))

    def init_from_backbone(self, backbone: nn.Module) -> None:
        """Official trick: temporal layers and frame positions from the backbone's text transformer."""
        init_temporal_from_backbone(self.temporal, backbone)

    # ----------------------------------------------------------------- input handling
    def as_input(self, x: torch.Tensor, name: str, shape: tuple[int | None, ...]) -> torch.Tensor:
        """Check ``x``'s shape (None = any size) and move it to the head's device and dtype."""
        if x.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
            want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
        # Compute in the head's own dtype/device (cached features are fp16 on the CPU).
        return x.to(device=self.logit_scale.device, dtype=self.logit_scale.dtype)

    def tag_input(self, tags: torch.Tensor | None, used: bool, name: str, rows: int) -> torch.Tensor | None:
        """Tag sentences [rows, D] for a slot the MLP uses (required), None for an ablated slot."""
        if not used:
            return None  # the slot is ablated: tags passed anyway are ignored on purpose
        if tags is None:
            raise ValueError(f"{name} is required: the model was built with it in the confidence MLP")
        return self.as_input(tags, name, (rows, self.config.embed_dim))

    @property
    def logit_scale_value(self) -> torch.Tensor:
        """lambda = exp(logit_scale) (kept <= 100 by clamping the parameter after each step)."""
        return self.logit_scale.exp()

    # ----------------------------------------------------------------- building blocks
    def encode_frames(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """F [Bv, N, D] -> F' = Transformer(F + pos) + F (padded frames masked as keys)."""
        frames = self.as_input(frames, "frames", (None, None, self.config.embed_dim))
        mask = mask.to(device=frames.device, dtype=torch.bool)
        if mask.shape != frames.shape[:2]:
            raise ValueError(f"frame mask: expected shape {tuple(frames.shape[:2])}, got {tuple(mask.shape)}")
        check_mask(mask)
        return self.temporal(frames, mask)

    def concept_split(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., K, d] (chunk or linear, per config)."""
        return self.concepts(x)

    def score_encoded(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                      tags_v: torch.Tensor | None = None, tags_t: torch.Tensor | None = None) -> PairScores:
        """Direct pairwise scores of captions [Bt, D] against already-encoded frames F' [Bv, N, D].

        Every pair's pooled video goes through the full (concatenated-input) confidence MLP: the
        reference form that :mod:`pipeline.scoring`'s fast algebra is tested against.
        """
        cfg = self.config
        frames = self.as_input(frames, "encoded frames", (None, None, cfg.embed_dim))
        bv = frames.shape[0]
        mask = mask.to(device=frames.device, dtype=torch.bool)
        if mask.shape != frames.shape[:2]:
            raise ValueError(f"frame mask: expected shape {tuple(frames.shape[:2])}, got {tuple(mask.shape)}")
        text = self.as_input(text, "text", (None, cfg.embed_dim))
        bt = text.shape[0]
        tags_v = self.tag_input(tags_v, cfg.use_visual_tags, "tags_v (visual tag sentences)", bv)
        tags_t = self.tag_input(tags_t, cfg.use_textual_tags, "tags_t (textual tag sentences)", bt)

        a = pool_weights(text, frames, mask, cfg.pool_temperature, cfg.pool_masking)  # [Bt, Bv, N]
        e_v = self.concepts(pool_frames(a, frames))  # [Bt, Bv, K, d]
        e_t = self.concepts(text)  # [Bt, K, d]
        parts = {"text": e_t[:, None], "video": e_v}
        e_av = e_at = None
        if tags_v is not None:
            e_av = self.concepts(tags_v)
            parts["tags_visual"] = e_av[None]
        if tags_t is not None:
            e_at = self.concepts(tags_t)
            parts["tags_textual"] = e_at[:, None]
        w = self.confidence(parts)  # [Bt, Bv, K]
        # Plain cosine (no epsilon), as the official code: a zero concept is a data error.
        cos = (e_t[:, None] * e_v).sum(-1) / (e_t.norm(dim=-1)[:, None] * e_v.norm(dim=-1))
        return PairScores(similarity=(w * cos).sum(-1), confidence=w, concept_cosine=cos, pool_weights=a,
                          text_concepts=e_t, video_concepts=e_v,
                          visual_tag_concepts=e_av, textual_tag_concepts=e_at)

    # ----------------------------------------------------------------- public API
    def similarity(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                   tags_v: torch.Tensor | None = None, tags_t: torch.Tensor | None = None) -> torch.Tensor:
        """S [Bt, Bv]: every caption pools every video. For large galleries use pipeline.scoring."""
        return self.score_encoded(text, self.encode_frames(frames, mask), mask, tags_v, tags_t).similarity

    def forward(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                tags_v: torch.Tensor | None = None, tags_t: torch.Tensor | None = None) -> ModelOutput:
        """A training batch of B matched pairs (caption b describes video b) -> ModelOutput."""
        if text.shape[0] != frames.shape[0]:
            raise ValueError(f"forward expects matched pairs: {text.shape[0]} captions vs {frames.shape[0]} videos "
                             "(use similarity() for unpaired sets)")
        scores = self.score_encoded(text, self.encode_frames(frames, mask), mask, tags_v, tags_t)
        diag = torch.arange(text.shape[0], device=scores.similarity.device)
        return ModelOutput(
            similarity=scores.similarity,
            logit_scale=self.logit_scale,
            text_concepts=scores.text_concepts,
            video_concepts=scores.video_concepts[diag, diag],
            visual_tag_concepts=scores.visual_tag_concepts,
            textual_tag_concepts=scores.textual_tag_concepts,
            confidence=scores.confidence,
            concept_cosine=scores.concept_cosine,
            pool_weights=scores.pool_weights,
        )
