"""Training losses of DiCoSA / MAC-VR (DESIGN.md, "The model"; paper Sec. 3.3.4 and Appx. D).

Every function returns named terms (a dict of tensors) with the weighted sum under ``"total"``
so the trainer can log each one.

- Cross-modal loss L_S: symmetric InfoNCE on the caption x video score matrix, scaled by
  lambda = exp(logit_scale). No clamp inside the loss: a clamp there zeroes dL/dlambda once
  lambda reaches 100 and the parameter can stick; CLIP (and the trainer here) clamp the
  *parameter* after each optimiser step instead. Positives are the diagonal (as the official
  code's CrossEn): batches must hold distinct videos. :func:`multi_positive_info_nce` is the
  same loss when several captions of one video share a batch (tiny-CLIP pretraining).
- Concept loss on matched pairs: C_kl = mean_b sum_c z(X_b^k)_c z(Y_b^l)_c / L, where z
  standardises each sample's d channels of a concept (mean 0, unbiased std 1) and L = max_words;
  Loss(C) = alpha sum_k (C_kk - 1)^2 + beta sum_{k!=l} C_kl^2. Dividing by L (the caption token
  length, 32) instead of d - 1 is the official code's normalisation, kept for fidelity.
- DiCoSA: L_S + Loss(C^{t,v}). MAC-VR: L_S + Loss(C^{t,v}) + alpha_align [Loss(C^{t,at}) +
  Loss(C^{av,v})] (paper Eq. 5's alpha; the official code uses 1, the paper's best value in
  Tab. 5). With one tag modality ablated only its alignment term remains (Tab. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model.macvr import ModelOutput


@dataclass(frozen=True)
class LossParams:
    """Loss weights (params.yaml: ``train.loss``; ``alpha_align`` is set per variant).

    alpha: weight of the on-diagonal term sum_k (C_kk - 1)^2 (0.01 in the official code).
    beta: weight of the off-diagonal term sum_{k!=l} C_kl^2 (0.005).
    alpha_align: weight of the MAC-VR alignment loss L_A (1.0 = official code and paper's best);
        0 gives the Tab. 4 "+VT+TT without L_A" ablation. Unused without tags (DiCoSA).
    """

    alpha: float
    beta: float
    alpha_align: float

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "alpha_align"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss config: {name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class LossConfig(LossParams):
    """:class:`LossParams` plus max_words: L, the normaliser of C (the official code divides by
    the caption token length, ``text.max_words``: 32, 64 for paragraphs)."""

    max_words: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_words <= 0:
            raise ValueError(f"loss config: max_words must be > 0, got {self.max_words}")


def multi_positive_info_nce(logits: torch.Tensor, text_video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE of scaled logits [T, V] where caption t belongs to video ``text_video[t]``.

    Text-to-video is a cross-entropy over the videos; video-to-text treats all of a video's
    captions in the batch as its positives (-log of their share of the column's softmax mass),
    which is CE(logits^T) when each video has exactly one caption.
    """
    t2v = F.cross_entropy(logits, text_video)
    positive = text_video[:, None] == torch.arange(logits.shape[1], device=logits.device)[None, :]
    columns = logits.t()  # [V, T]
    v2t = (columns.logsumexp(dim=1) - columns.masked_fill(~positive.t(), float("-inf")).logsumexp(dim=1)).mean()
    return {"total": (t2v + v2t) / 2, "t2v": t2v, "v2t": v2t}


def info_nce(similarity: torch.Tensor, logit_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_S = (CE(lambda S) + CE(lambda S^T)) / 2 with targets on the diagonal of S [B, B]."""
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"info_nce: expected a square [B, B] score matrix, got {tuple(similarity.shape)}")
    logits = logit_scale.exp() * similarity
    target = torch.arange(similarity.shape[0], device=similarity.device)
    t2v = F.cross_entropy(logits, target)
    v2t = F.cross_entropy(logits.t(), target)
    return {"total": (t2v + v2t) / 2, "t2v": t2v, "v2t": v2t}


def standardise(x: torch.Tensor) -> torch.Tensor:
    """z over the last dim (a concept's d channels): mean 0, unbiased std 1 (no epsilon, as official)."""
    return (x - x.mean(dim=-1, keepdim=True)) / x.std(dim=-1, keepdim=True)


def concept_correlation(x: torch.Tensor, y: torch.Tensor, max_words: int) -> torch.Tensor:
    """C [K, K], C_kl = mean_b sum_c z(x_b^k)_c z(y_b^l)_c / max_words, from x, y [B, K, d]."""
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(f"concept_correlation: expected two [B, K, d] tensors of one shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    zx, zy = standardise(x), standardise(y)
    return torch.einsum("bkc,blc->kl", zx, zy) / (x.shape[0] * max_words)


def correlation_loss(c: torch.Tensor, alpha: float, beta: float) -> dict[str, torch.Tensor]:
    """alpha sum_k (C_kk - 1)^2 + beta sum_{k!=l} C_kl^2."""
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).masked_fill(eye, 0.0).sum()
    return {"total": alpha * on + beta * off, "on_diag": on, "off_diag": off}


def concept_loss(x: torch.Tensor, y: torch.Tensor, config: LossConfig) -> dict[str, torch.Tensor]:
    """Loss(C^{x,y}) for matched concepts x, y [B, K, d]."""
    return correlation_loss(concept_correlation(x, y, config.max_words), config.alpha, config.beta)


def training_loss(output: ModelOutput, config: LossConfig) -> dict[str, torch.Tensor]:
    """Total loss of a model output plus its named terms.

    Keys: total, sim (L_S), sim_t2v, sim_v2t, concept (Loss(C^{t,v})), and when present
    align_text (Loss(C^{t,at})), align_visual (Loss(C^{av,v})), align (their sum, unweighted).
    The tag terms exist exactly when the model has that tag slot (dicosa has neither).
    """
    sim = info_nce(output.similarity, output.logit_scale)
    concept = concept_loss(output.text_concepts, output.video_concepts, config)
    terms = {"sim": sim["total"], "sim_t2v": sim["t2v"], "sim_v2t": sim["v2t"], "concept": concept["total"]}
    total = sim["total"] + concept["total"]
    align = []
    if output.textual_tag_concepts is not None:
        terms["align_text"] = concept_loss(output.text_concepts, output.textual_tag_concepts, config)["total"]
        align.append(terms["align_text"])
    if output.visual_tag_concepts is not None:
        terms["align_visual"] = concept_loss(output.visual_tag_concepts, output.video_concepts, config)["total"]
        align.append(terms["align_visual"])
    if align:
        terms["align"] = torch.stack(align).sum()
        total = total + config.alpha_align * terms["align"]
    terms["total"] = total
    return terms
