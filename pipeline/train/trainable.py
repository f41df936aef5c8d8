"""The module that training optimises (and DDP wraps): the backbone (finetune) + the head + losses.

``forward(batch)`` returns the named loss terms of one step. Per-sample encoders run on this
rank's shard: the backbone (finetune mode) and the head's temporal transformer. Their outputs are
then all-gathered across ranks with gradients flowing back into the local shard
(:func:`~pipeline.train.distributed.all_gather_with_grad`), and the pairwise scores and losses are
computed on the global batch -- the reference's data-parallel scheme.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.backbone.encode import padded_frame_features
from pipeline.losses import LossConfig, training_loss
from pipeline.model import MAX_LOGIT_SCALE, MacVR, ModelOutput
from pipeline.train.distributed import all_gather_with_grad


def matched_output(head: MacVR, text: torch.Tensor, encoded: torch.Tensor, mask: torch.Tensor,
                   tags_v: torch.Tensor | None, tags_t: torch.Tensor | None,
                   logit_scale: torch.Tensor) -> ModelOutput:
    """``head.forward`` for frames already through ``head.encode_frames`` (pair b = row b)."""
    scores = head.score_encoded(text, encoded, mask, tags_v, tags_t)
    diag = torch.arange(text.shape[0], device=scores.similarity.device)
    return ModelOutput(
        similarity=scores.similarity, logit_scale=logit_scale,
        text_concepts=scores.text_concepts, video_concepts=scores.video_concepts[diag, diag],
        visual_tag_concepts=scores.visual_tag_concepts, textual_tag_concepts=scores.textual_tag_concepts,
        confidence=scores.confidence, concept_cosine=scores.concept_cosine, pool_weights=scores.pool_weights,
    )


class Trainable(nn.Module):
    """``head`` (+ ``backbone`` when fine-tuning end to end) and the loss of one training step.

    ``logit_scale``: ``head`` uses the head's own parameter; ``backbone`` (official) uses the
    backbone's ``logit_scale`` when the backbone is trained, and the head's parameter -- set
    to the backbone's value and frozen by the caller -- with cached features.
    """

    def __init__(self, head: MacVR, backbone: nn.Module | None, loss: LossConfig, logit_scale: str = "head",
                 padding: str = "zero", max_words: int = 32) -> None:
        super().__init__()
        self.head = head
        self.backbone = backbone
        self.loss = loss
        self.padding, self.max_words = padding, max_words
        self.scale_from_backbone = logit_scale == "backbone" and backbone is not None
        if backbone is not None and backbone.logit_scale is not None and not self.scale_from_backbone:
            # The backbone's own temperature is not used: freeze it so DDP does not wait for a
            # gradient that never comes.
            backbone.logit_scale.requires_grad_(False)
        if self.scale_from_backbone:
            head.logit_scale.requires_grad_(False)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The log temperature the loss uses."""
        return self.backbone.logit_scale if self.scale_from_backbone else self.head.logit_scale

    def embed(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """Backbone features of a batch: cached ones as they are, or encoded by the backbone being trained."""
        cfg = self.head.config
        if self.backbone is None:
            return {"text": batch["text"], "frames": batch["frames"], "mask": batch["mask"],
                    "tags_v": batch["tags_v"] if cfg.use_visual_tags else None,
                    "tags_t": batch["tags_t"] if cfg.use_textual_tags else None}
        mask = batch["mask"].bool()
        frames = padded_frame_features(self.backbone, batch["frames"], mask, self.padding)

        def text(key: str) -> torch.Tensor:
            return self.backbone.encode_text(batch[f"{key}_ids"], batch[f"{key}_mask"])

        return {"text": text("text"), "frames": frames, "mask": mask,
                "tags_v": text("tags_v") if cfg.use_visual_tags else None,
                "tags_t": text("tags_t") if cfg.use_textual_tags else None}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f = self.embed(batch)
        encoded = self.head.encode_frames(f["frames"], f["mask"])
        gather = {k: all_gather_with_grad(v) if v is not None else None
                  for k, v in (("text", f["text"]), ("encoded", encoded), ("mask", f["mask"]),
                               ("tags_v", f["tags_v"]), ("tags_t", f["tags_t"]))}
        output = matched_output(self.head, gather["text"], gather["encoded"], gather["mask"],
                                gather["tags_v"], gather["tags_t"], self.logit_scale)
        return training_loss(output, self.loss)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep ln(lambda) <= ln(100) in the parameter itself, after each optimiser step, as CLIP
        does: a clamp inside the loss would zero the parameter's gradient once it reaches the cap."""
        self.logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
