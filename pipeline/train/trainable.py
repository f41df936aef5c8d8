"""The module that training optimises (and DDP wraps): CLIP encoders (finetune) + the head + losses.

``forward(batch)`` returns the named loss terms of one step. Per-sample encoders run on this
rank's shard: CLIP (finetune mode) and the head's temporal transformer. Their outputs are then
all-gathered across ranks with gradients flowing back into the local shard
(:func:`~pipeline.train.distributed.all_gather_with_grad`), and the pairwise scores and losses are
computed on the global batch -- the reference's data-parallel scheme.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.losses import LossConfig, training_loss
from pipeline.model import MacVR, ModelOutput
from pipeline.model.config import MAX_LOGIT_SCALE
from pipeline.train.distributed import all_gather_with_grad


def matched_output(head: MacVR, text: torch.Tensor, encoded: torch.Tensor, mask: torch.Tensor,
                   tags_v: torch.Tensor | None, tags_t: torch.Tensor | None) -> ModelOutput:
    """``head.forward`` for frames already through ``head.encode_frames`` (pair b = row b)."""
    scores = head.score_encoded(text, encoded, mask, tags_v, tags_t)
    diag = torch.arange(text.shape[0], device=scores.similarity.device)
    return ModelOutput(
        similarity=scores.similarity, logit_scale=head.logit_scale,
        text_concepts=scores.text_concepts, video_concepts=scores.video_concepts[diag, diag],
        visual_tag_concepts=scores.visual_tag_concepts, textual_tag_concepts=scores.textual_tag_concepts,
        confidence=scores.confidence, concept_cosine=scores.concept_cosine, pool_weights=scores.pool_weights,
    )


class Trainable(nn.Module):
    """``head`` (+ ``clip`` when fine-tuning end to end) and the loss of one training step."""

    def __init__(self, head: MacVR, clip: nn.Module | None, loss: LossConfig) -> None:
        super().__init__()
        self.head = head
        self.clip = clip
        self.loss = loss
        if clip is not None:
            # CLIP's own temperature is not used (the head has its own): freeze it so DDP does
            # not wait for a gradient that never comes.
            clip.logit_scale.requires_grad_(False)

    @property
    def uses_visual_tags(self) -> bool:
        return self.head.config.use_visual_tags

    @property
    def uses_textual_tags(self) -> bool:
        return self.head.config.use_textual_tags

    def embed(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """CLIP features of a batch: cached ones as they are, or encoded by the CLIP being trained."""
        if self.clip is None:
            return {"text": batch["text"], "frames": batch["frames"], "mask": batch["mask"],
                    "tags_v": batch["tags_v"] if self.uses_visual_tags else None,
                    "tags_t": batch["tags_t"] if self.uses_textual_tags else None}
        from pipeline.backbone.encode import encode_frames

        frames, mask = batch["frames"], batch["mask"].bool()
        real = encode_frames(self.clip, frames[mask])  # padded slots are never encoded
        feats = real.new_zeros(*mask.shape, real.shape[-1])
        feats[mask] = real
        text = self.clip.encode_text(batch["text_tokens"]).float()
        tags_v = self.clip.encode_text(batch["tags_v_tokens"]).float() if self.uses_visual_tags else None
        tags_t = self.clip.encode_text(batch["tags_t_tokens"]).float() if self.uses_textual_tags else None
        return {"text": text, "frames": feats, "mask": mask, "tags_v": tags_v, "tags_t": tags_t}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f = self.embed(batch)
        encoded = self.head.encode_frames(f["frames"], f["mask"])
        gather = {k: all_gather_with_grad(v) if v is not None else None
                  for k, v in (("text", f["text"]), ("encoded", encoded), ("mask", f["mask"]),
                               ("tags_v", f["tags_v"]), ("tags_t", f["tags_t"]))}
        output = matched_output(self.head, gather["text"], gather["encoded"], gather["mask"],
                                gather["tags_v"], gather["tags_t"])
        return training_loss(output, self.loss)

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Keep ln(lambda) <= ln(100) in the parameter itself, as the official code does after
        every step (the forward clamps lambda too, but a parameter left above the clamp would get
        no gradient and stay stuck there)."""
        self.head.logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
