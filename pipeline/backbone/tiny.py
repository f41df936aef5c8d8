"""Backbone kind ``tiny``: a small CLIP (clip-anytorch's ``CLIP`` class) pretrained here.

It gives the synthetic default meaningful frozen features without downloads. Each step takes a
batch of distinct training videos; a video is the mean of the embeddings of a few of its real
frames drawn at random (a cheap temporal augmentation, and the same frame-mean the evaluation
uses), paired with a few of its captions drawn at random. The loss is the symmetric InfoNCE of
:mod:`pipeline.losses` with a video's captions as its positives, the optimiser uses the training
code's parameter-decay rule and warmup-cosine schedule (:mod:`pipeline.optimisation`), and the
report is R@1 from :mod:`pipeline.retrieval`: nothing of the head's training is re-implemented.

Two sizes are not knobs here: the input resolution is the frames stage's ``image_size`` (read
from the frames directory) and the text context is ``text.max_words``.

Pretraining options (knobs for the synthetic testbed; ``params.yaml`` turns on only
``tag_pair_weight``; with all of them off the weights are bit-for-bit those of the plain recipe
above):

- ``temporal``: the video readout. ``mean`` is the frame mean, to which motion, growth,
  appearing/disappearing and colour changes are invisible (a shape moving left and one moving
  right have the same mean). ``delta`` adds a learnt linear map of the change between the later
  and the earlier half of the time-ordered frames, ``mean + W (mean_late - mean_early)``, so
  per-frame features must carry what changes over time in a linearly readable form. ``W``
  (zero-initialised) belongs to pretraining only: the saved backbone is a plain CLIP, and the
  head's temporal transformer learns its own readout.
- ``tag_text_weight > 0``: a caption-to-own-textual-tags InfoNCE (sentences of
  ``tags_per_sentence`` tags, drawn as the features stage draws them), so the tiny text tower,
  which has never seen the tag vocabulary, learns it (a real CLIP's already knows it). Only
  textual tags: the image tower learns nothing from tags.
- ``tag_visual_weight > 0``: a video-to-own-visual-tag-sentence InfoNCE, so keyword-list tag
  sentences land near the videos they describe (as alt-text does for a real CLIP). Training
  videos use their tags from ``tags.parquet``; fresh clips get tags written from their scenes in
  the offline visual tagger's vocabulary (as the ``oracle`` tag control writes them). The test
  split is never touched.
- ``tag_pair_weight > 0``: an InfoNCE between each training caption's textual-tag sentence and
  its video's visual-tag sentence, text against text (:mod:`pipeline.backbone.tag_terms`). The
  two taggers name the same facts in different words (the caption's "moves to the left" against
  the pixels' "moving left"); a real CLIP's text tower puts such keyword lists near each other
  from its web pretraining, the tiny one learns it here from the training split's own tags.
  This is what lets MAC-VR's tag concepts carry what the frozen frame features miss (shape,
  motion, size): on the default data it moves MAC-VR - DiCoSA t2v R@1 from +0.3 [-1.2, +1.7]
  to +7.3 [+4.3, +10.3] with the real tags (README, experiments/RESULTS.md). Each step pairs
  one caption per video: the same gain as all of them, at a third of the term's cost. The test
  split is never touched.
- ``fresh_fraction > 0``: that share of every batch is newly generated synthetic clips
  (:mod:`pipeline.backbone.stream`; synthetic data only), so the backbone stops memorising the
  training videos; their captions are full scene descriptions with probability
  ``fresh_full_captions``, and they come in groups of ``fresh_siblings`` look-alike scenes (hard
  negatives colour cannot separate). The step count stays ``epochs`` x the split's batches.

The tag options need ``tags.parquet``, which the backbone stage passes (a
:class:`~pipeline.backbone.tag_terms.TagOptions`). The fresh clips need the prepared videos table
and, with tags, the visual tagger's config, which it does not pass: library callers
(``experiments/``) hand them over as a :class:`~pipeline.backbone.pretrain_options.PretrainOptions`.
This module does not import that one, so the stage's dependencies stay free of the synthetic
generator.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.base import Backbone, BackboneFamily, BuildInputs, TextBatch, register_family
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.data import VideoTextSet, load_video_text_set
from pipeline.backbone.tag_terms import TAG_DRAWS, TagOptions
from pipeline.config import library_only_field, to_dict
from pipeline.losses import multi_positive_info_nce
from pipeline.model.config import MAX_LOGIT_SCALE
from pipeline.retrieval.metrics import rank_metrics, ranks_t2v, ranks_v2t
from pipeline.optimisation import WarmupCosine, is_no_decay

log = logging.getLogger(__name__)

EVAL_SPLITS = ("train", "val", "test")

# The pretraining options' "off" values (params.yaml's): with these the recipe is the plain one.
PRETRAIN_OPTIONS_OFF: dict[str, Any] = {
    "temporal": "mean", "tag_text_weight": 0.0, "tag_visual_weight": 0.0, "tag_pair_weight": 0.0,
    "tags_per_sentence": 6, "fresh_fraction": 0.0, "fresh_full_captions": 0.0, "fresh_siblings": 1}


_FRESH_WHY = ("fresh clips need the prepared clips' geometry, which the backbone stage does not pass; "
              "set it in code through experiments/ (experiments.common.tiny_config, PretrainOptions)")


@dataclass(frozen=True)
class TinyClipConfig:
    """A small CLIP pretrained contrastively on the train split (``params.yaml: backbone.tiny``).

    Widths follow clip-anytorch's constraints: the vision tower always uses
    ``vision_width // 64`` heads (so the width must be a multiple of 64); the text tower's head
    count must divide its width. The vocabulary is CLIP's BPE (49408). Training: ``epochs`` over
    the train videos in batches of ``batch_size`` videos; each video is the mean embedding of
    ``frames_per_sample`` random real frames, matched with ``captions_per_sample`` of its
    captions; AdamW with ``lr``, ``weight_decay`` (matrices only), linear warmup over
    ``warmup_frac`` of the steps then cosine decay; ``seed`` fixes init and sampling.
    Pretraining options (off: :data:`PRETRAIN_OPTIONS_OFF`; see the module doc): ``temporal``
    (``mean`` | ``delta`` readout), ``tag_text_weight``, ``tag_visual_weight`` and
    ``tag_pair_weight`` (tag-sentence InfoNCE terms, sentences of ``tags_per_sentence`` tags),
    ``fresh_fraction`` (share of each batch that is new synthetic clips), ``fresh_full_captions``
    (their chance of a full scene description) and ``fresh_siblings`` (look-alike scenes per group).
    """

    embed_dim: int
    vision_patch_size: int
    vision_width: int
    vision_layers: int
    text_width: int
    text_heads: int
    text_layers: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float
    frames_per_sample: int
    captions_per_sample: int
    seed: int
    temporal: Literal["mean", "delta"]
    tag_text_weight: float
    tag_visual_weight: float
    tag_pair_weight: float
    tags_per_sentence: int
    # Fresh clips need the prepared clips' geometry, which the backbone stage does not pass: set
    # by experiments/ in code (PretrainOptions), refused in params.yaml.
    fresh_fraction: float = library_only_field(0.0, _FRESH_WHY)
    fresh_full_captions: float = library_only_field(0.0, _FRESH_WHY)
    fresh_siblings: int = library_only_field(1, _FRESH_WHY)

    def __post_init__(self) -> None:
        positive = ("embed_dim", "vision_patch_size", "vision_width", "vision_layers", "text_width",
                    "text_heads", "text_layers", "epochs", "frames_per_sample", "captions_per_sample")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"tiny.{name} must be >= 1, got {getattr(self, name)}")
        if self.vision_width % 64:
            raise ValueError(f"tiny.vision_width must be a multiple of 64 (clip-anytorch uses "
                             f"width // 64 vision heads), got {self.vision_width}")
        if self.text_width % self.text_heads:
            raise ValueError(f"tiny.text_width ({self.text_width}) must be divisible by "
                             f"tiny.text_heads ({self.text_heads})")
        if self.batch_size < 2:
            raise ValueError(f"tiny.batch_size must be >= 2 (a contrastive batch needs "
                             f"negatives), got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"tiny.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"tiny.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"tiny.warmup_frac must be in [0, 1), got {self.warmup_frac}")
        self._check_options()

    def _check_options(self) -> None:
        if self.temporal not in ("mean", "delta"):
            raise ValueError(f"tiny.temporal must be 'mean' or 'delta', got {self.temporal!r}")
        for name in ("tag_text_weight", "tag_visual_weight", "tag_pair_weight"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"tiny.{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.tags_per_sentence < 1:
            raise ValueError(f"tiny.tags_per_sentence must be >= 1, got {self.tags_per_sentence}")
        for name in ("fresh_fraction", "fresh_full_captions"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"tiny.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fresh_siblings < 1:
            raise ValueError(f"tiny.fresh_siblings must be >= 1 (1 = no look-alikes), got {self.fresh_siblings}")
        if self.fresh_fraction > 0 and self.fresh_clips_per_batch == 0:
            raise ValueError(f"tiny.fresh_fraction ({self.fresh_fraction}) x tiny.batch_size ({self.batch_size}) "
                             "rounds to no fresh clip per batch: raise it or set it to 0")
        if self.fresh_fraction == 0:
            for name, off in (("fresh_full_captions", 0.0), ("fresh_siblings", 1)):
                if getattr(self, name) != off:
                    raise ValueError(f"tiny.{name} ({getattr(self, name)}) applies to fresh clips only: "
                                     f"set tiny.fresh_fraction > 0, or {name} to {off}")

    @property
    def uses_options(self) -> bool:
        """Whether pretraining needs options: :class:`~pipeline.backbone.tag_terms.TagOptions` (the tag
        terms) or :class:`~pipeline.backbone.pretrain_options.PretrainOptions` (also fresh clips)."""
        return (self.tag_text_weight > 0 or self.tag_visual_weight > 0 or self.tag_pair_weight > 0
                or self.fresh_fraction > 0)

    @property
    def fresh_clips_per_batch(self) -> int:
        return int(round(self.fresh_fraction * self.batch_size))

    def source(self) -> dict[str, Any]:
        """The config as the weights file records it: the pretraining options only when they differ
        from :data:`PRETRAIN_OPTIONS_OFF`, so a default build writes the file it wrote before the
        options existed."""
        return {k: v for k, v in to_dict(self).items() if k not in PRETRAIN_OPTIONS_OFF or v != PRETRAIN_OPTIONS_OFF[k]}

    def check_sizes(self, image_size: int, context_length: int) -> None:
        """The sizes taken from elsewhere must fit this architecture."""
        if image_size % self.vision_patch_size:
            raise ValueError(f"frames.image_size ({image_size}) must be a multiple of "
                             f"backbone.tiny.vision_patch_size ({self.vision_patch_size})")
        if context_length < 3:
            raise ValueError(f"text.max_words must be >= 3 (start, a token, end), got {context_length}")


def tiny_arch(cfg: TinyClipConfig, image_size: int, context_length: int) -> ClipArch:
    cfg.check_sizes(image_size, context_length)
    return ClipArch(
        embed_dim=cfg.embed_dim, image_resolution=image_size,
        vision_layers=cfg.vision_layers, vision_width=cfg.vision_width,
        vision_patch_size=cfg.vision_patch_size, context_length=context_length,
        vocab_size=CLIP_VOCAB_SIZE, transformer_width=cfg.text_width,
        transformer_heads=cfg.text_heads, transformer_layers=cfg.text_layers,
    )


class VideoReadout(torch.nn.Module):
    """Pretraining-only video embedding from time-ordered frame embeddings (``temporal``, see the
    module doc): the frame mean, plus ``W (mean_late - mean_early)`` for ``delta``."""

    def __init__(self, dim: int, temporal: str) -> None:
        super().__init__()
        if temporal not in ("mean", "delta"):
            raise ValueError(f"unknown temporal readout {temporal!r} (expected mean or delta)")
        self.temporal = temporal
        self.delta = torch.nn.Linear(dim, dim, bias=False) if temporal == "delta" else None
        if self.delta is not None:
            torch.nn.init.zeros_(self.delta.weight)

    def forward(self, feats: torch.Tensor, frame_video: np.ndarray, num_videos: int) -> torch.Tensor:
        """feats ``[F, D]`` of frames grouped by video and in time order within a video."""
        index = torch.as_tensor(frame_video, dtype=torch.long, device=feats.device)
        sums = torch.zeros(num_videos, feats.shape[1], dtype=feats.dtype, device=feats.device).index_add_(0, index, feats)
        counts = torch.bincount(index, minlength=num_videos).clamp_min(1)
        mean = sums / counts.unsqueeze(1)
        if self.delta is None:
            return mean
        # Position of each frame within its video: frames of a video are contiguous.
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(len(index), device=feats.device) - starts[index]
        n = counts[index]
        half = n // 2  # odd counts: the middle frame is in neither half
        late, early = pos >= n - half, pos < half
        weight = (late.to(feats.dtype) - early.to(feats.dtype)) / half.clamp_min(1).to(feats.dtype)
        change = torch.zeros_like(mean).index_add_(0, index, feats * weight.unsqueeze(1))
        return mean + self.delta(change)


_MEAN = VideoReadout(1, "mean")  # parameter-free


def video_embeddings(backbone: Backbone, frames: np.ndarray, frame_video: np.ndarray,
                     num_videos: int, readout: VideoReadout | None = None) -> torch.Tensor:
    """Video embeddings from frames ``[F,S,S,3]`` grouped by video in time order, ``frame_video[F]``:
    the mean of the frame embeddings, or ``readout``'s."""
    return (readout if readout is not None else _MEAN)(backbone.encode_frames(frames), frame_video, num_videos)


def contrastive_loss(logit_scale: torch.Tensor, video: torch.Tensor, text: torch.Tensor,
                     text_video: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities of ``T`` captions and ``B`` videos; caption t
    belongs to video ``text_video[t]`` (default: caption i to video i)."""
    if text_video is None:
        text_video = torch.arange(len(text))
    logits = logit_scale.exp() * F.normalize(text, dim=-1) @ F.normalize(video, dim=-1).T  # [T, B]
    return multi_positive_info_nce(logits, text_video)["total"]


def _draw_rows(items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random pre-tokenised tag sentence (row of :func:`tag_sentence_tokens`) per item."""
    return np.asarray(items, dtype=np.int64) * TAG_DRAWS + rng.integers(TAG_DRAWS, size=len(items))


def _cat_text(a: TextBatch, b: TextBatch) -> TextBatch:
    return TextBatch(torch.cat([a.ids, b.ids]), torch.cat([a.mask, b.mask]),
                     np.concatenate([np.asarray(a.truncated), np.asarray(b.truncated)]))


def text_pair_loss(logit_scale: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between two matched sets of text embeddings (row i with row i)."""
    logits = logit_scale.exp() * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def tag_pair_loss(backbone: Backbone, logit_scale: torch.Tensor, caption_tags: TextBatch, video_tags: TextBatch,
                  caption_video: torch.Tensor) -> torch.Tensor:
    """InfoNCE between captions' textual-tag sentences and videos' visual-tag sentences (caption
    t belongs to video ``caption_video[t]``): text against text, so the text tower learns which
    keywords of the two taggers' vocabularies name the same fact."""
    return contrastive_loss(logit_scale, backbone.encode_text(video_tags.ids, video_tags.mask),
                            backbone.encode_text(caption_tags.ids, caption_tags.mask), caption_video)


def _optimizers(model: torch.nn.Module, cfg: TinyClipConfig,
                readout: torch.nn.Module | None = None) -> list[torch.optim.Optimizer]:
    """AdamW for the network (the training code's no-decay rule); lazy Adam for the vocabulary.

    The 49408-row token embedding holds most of the parameters but a synthetic caption set uses
    a few hundred tokens: sparse gradients make its update cost those rows only.
    """
    model.token_embedding.sparse = True
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, plain = [], []
    for name, p in model.named_parameters():
        if name == "token_embedding.weight":
            continue
        (plain if is_no_decay(name, p, embeddings) else decay).append(p)
    if readout is not None:
        plain.extend(readout.parameters())  # the delta map starts at zero and is meant to grow: no decay
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    betas, eps = (0.9, 0.98), 1e-6  # CLIP's Adam settings
    return [torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=eps, fused=True),
            torch.optim.SparseAdam([model.token_embedding.weight], lr=cfg.lr, betas=betas, eps=eps)]


def _sample_batch(data: VideoTextSet, videos: np.ndarray, caps_of: list[np.ndarray],
                  cfg: TinyClipConfig, rng: np.random.Generator):
    """Random real frames and random distinct captions of each video of a batch."""
    frames, frame_video, caption_idx, caption_video = [], [], [], []
    for j, v in enumerate(videos):
        real = np.flatnonzero(data.mask[v])
        if real.size == 0:
            raise ValueError(f"video {data.video_ids[v]}: no real frames in clip_mask")
        pick = np.sort(rng.choice(real, size=min(cfg.frames_per_sample, real.size), replace=False))
        frames.append(data.frames[v, pick])
        frame_video.extend([j] * len(pick))
        caps = rng.choice(caps_of[v], size=min(cfg.captions_per_sample, len(caps_of[v])), replace=False)
        caption_idx.extend(caps.tolist())
        caption_video.extend([j] * len(caps))
    if not frames:  # an all-fresh batch takes no split videos
        return (np.empty((0, *data.frames.shape[2:]), np.uint8), np.empty(0, np.int64), np.empty(0, np.int64),
                torch.empty(0, dtype=torch.long))
    return (np.concatenate(frames), np.asarray(frame_video), np.asarray(caption_idx),
            torch.as_tensor(caption_video))


def _split_videos(num_videos: int, rng: np.random.Generator):
    """Training-split video indices, one shuffled pass after another (batches with fresh clips)."""
    while True:
        yield from rng.permutation(num_videos)


def pretrain_tiny(cfg: TinyClipConfig, data: VideoTextSet, image_size: int, context_length: int,
                  progress: bool = True, options: Any = None) -> tuple[ClipModel, dict[str, Any]]:
    """Train a fresh tiny CLIP on ``data``; returns the eval-mode backbone and a history dict
    (``history["readout"]``: the trained pretraining-only :class:`VideoReadout`).

    Seeded (init, batches, frame and caption draws); on CPU with a fixed thread count the
    result is bit-for-bit reproducible. Does not touch the global torch RNG state.
    ``options`` (:class:`~pipeline.backbone.tag_terms.TagOptions` or its extension
    :class:`~pipeline.backbone.pretrain_options.PretrainOptions`) serve the tag and fresh-clip
    options: the tag sentences (``data`` then carries the split's tags), the clip geometry for
    ``fresh_fraction > 0``, the visual tagger's config for ``tag_visual_weight > 0`` with fresh clips.
    """
    num_videos = len(data.video_ids)
    if num_videos < 2:
        raise ValueError(f"contrastive pretraining needs >= 2 videos, got {num_videos}")
    n_fresh = cfg.fresh_clips_per_batch
    if cfg.tag_text_weight > 0 and data.caption_tags is None:
        raise ValueError("tiny.tag_text_weight > 0 needs the captions' textual tags (tags.parquet)")
    if cfg.tag_visual_weight > 0 and data.video_tags is None:
        raise ValueError("tiny.tag_visual_weight > 0 needs the videos' visual tags (tags.parquet)")
    if cfg.tag_pair_weight > 0 and (data.caption_tags is None or data.video_tags is None):
        raise ValueError("tiny.tag_pair_weight > 0 needs the captions' textual and the videos' visual tags (tags.parquet)")
    if cfg.uses_options and options is None:
        raise ValueError("tiny's tag and fresh-clip options need TagOptions (pipeline.backbone.tag_terms: "
                         "tags.parquet) or PretrainOptions (pipeline.backbone.pretrain_options: also the clip "
                         "geometry of the prepared videos, the tagger)")
    if n_fresh and getattr(options, "geometry", None) is None:  # TagOptions have no clips
        raise ValueError("tiny.fresh_fraction > 0 needs the clip geometry of the prepared videos, which the backbone "
                         "stage does not pass (fresh clips are an experiments/ option: PretrainOptions)")
    fresh_tagger = options.fresh_tagger() if cfg.tag_visual_weight > 0 and n_fresh else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        backbone = ClipModel(tiny_arch(cfg, image_size, context_length).build().float(), "tiny").train()
        readout = VideoReadout(cfg.embed_dim, cfg.temporal)
    model = backbone.model
    rng = np.random.default_rng(cfg.seed)
    text = backbone.tokenize(data.captions, context_length)
    if text.truncated.any():
        log.info("%d of %d captions truncated to %d tokens", text.truncated.sum(), len(text), context_length)
    caps_of = data.captions_of()
    caption_tag_text = video_tag_text = None
    if cfg.tag_text_weight > 0 or cfg.tag_pair_weight > 0:
        caption_tag_text = options.tag_tokens(backbone, data.caption_tags, data.caption_ids,
                                              cfg.tags_per_sentence, cfg.seed, context_length, "textual")
    if cfg.tag_visual_weight > 0 or cfg.tag_pair_weight > 0:
        video_tag_text = options.tag_tokens(backbone, data.video_tags, data.video_ids, cfg.tags_per_sentence,
                                            cfg.seed, context_length, "visual")
    batch = min(cfg.batch_size, num_videos)
    # Drop a last batch of one video: InfoNCE needs negatives.
    per_epoch = num_videos // batch + (1 if num_videos % batch >= 2 else 0)
    total = per_epoch * cfg.epochs
    split_order = _split_videos(num_videos, rng)  # lazy: draws nothing unless there are fresh clips
    optimizers = _optimizers(model, cfg, readout)
    schedule = WarmupCosine(int(cfg.warmup_frac * total), total)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in optimizers]
    epoch_losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="pretrain tiny CLIP", unit="step", disable=not progress, mininterval=1.0)
    step = 0
    for _ in range(cfg.epochs):
        if not n_fresh:
            order = rng.permutation(num_videos)
        losses = []
        for b in range(per_epoch):
            if n_fresh:
                videos = np.array([next(split_order) for _ in range(cfg.batch_size - n_fresh)], dtype=np.int64)
            else:
                videos = order[b * batch: (b + 1) * batch]
            frames, frame_video, caption_idx, caption_video = _sample_batch(data, videos, caps_of, cfg, rng)
            picked = text.rows(caption_idx)
            n_videos = len(videos)
            video_tags = None
            if cfg.tag_visual_weight > 0 and n_videos:
                video_tags = video_tag_text.rows(_draw_rows(videos, rng))
            if n_fresh:
                fresh = options.fresh(n_fresh, cfg.frames_per_sample, cfg.captions_per_sample,
                                      cfg.seed, step, cfg.fresh_full_captions, cfg.fresh_siblings)
                frames = np.concatenate([frames, fresh.frames]) if len(frames) else fresh.frames
                frame_video = np.concatenate([frame_video, fresh.frame_video + n_videos])
                picked = _cat_text(picked, backbone.tokenize(fresh.captions, context_length))
                caption_video = torch.cat([caption_video, torch.as_tensor(fresh.caption_video) + n_videos])
                if fresh_tagger is not None:
                    fresh_tags = backbone.tokenize(fresh_tagger.sentences(fresh.scenes, cfg.tags_per_sentence, rng),
                                                   context_length)
                    video_tags = fresh_tags if video_tags is None else _cat_text(video_tags, fresh_tags)
                n_videos += n_fresh
            step += 1
            video = video_embeddings(backbone, frames, frame_video, n_videos, readout)
            caption_emb = backbone.encode_text(picked.ids, picked.mask)
            loss = contrastive_loss(model.logit_scale, video, caption_emb, caption_video)
            if cfg.tag_text_weight > 0 and len(caption_idx) > 1:
                tags = caption_tag_text.rows(_draw_rows(caption_idx, rng))
                loss = loss + cfg.tag_text_weight * text_pair_loss(
                    model.logit_scale, caption_emb[:len(caption_idx)], backbone.encode_text(tags.ids, tags.mask))
            if cfg.tag_pair_weight > 0 and len(videos) > 1:
                # One caption per video (the first drawn): the tag sentences cost as much text
                # tower as the captions do, and one pair per video keeps the term at ~half that.
                _, first = np.unique(caption_video[:len(caption_idx)].numpy(), return_index=True)
                loss = loss + cfg.tag_pair_weight * tag_pair_loss(
                    backbone, model.logit_scale, caption_tag_text.rows(_draw_rows(caption_idx[first], rng)),
                    video_tag_text.rows(_draw_rows(videos, rng)), torch.arange(len(videos)))
            if cfg.tag_visual_weight > 0 and video_tags is not None and n_videos > 1:
                loss = loss + cfg.tag_visual_weight * contrastive_loss(
                    model.logit_scale, video, backbone.encode_text(video_tags.ids, video_tags.mask))
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o, sched in zip(optimizers, schedulers):
                o.step()
                sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch_losses.append(float(np.mean(losses)))
    bar.close()
    model.token_embedding.sparse = False
    history = {"epoch_loss": epoch_losses, "steps": total, "seconds": time.perf_counter() - start,
               "logit_scale": float(model.logit_scale.detach().exp()), "readout": readout.eval()}
    return backbone.eval(), history


@torch.no_grad()
def retrieval_r1(backbone: Backbone, data: VideoTextSet, max_words: int, batch_size: int = 256,
                 readout: VideoReadout | None = None) -> dict[str, float]:
    """R@1 (fractions) of video embeddings (frame mean, or ``readout`` over all real frames)
    against captions: t2v over captions, v2t over videos (a video is retrieved when its best
    caption is any of its own)."""
    backbone.eval()
    videos = []
    per_chunk = max(1, batch_size // data.frames.shape[1])
    for start in range(0, len(data.video_ids), per_chunk):
        v = np.arange(start, min(start + per_chunk, len(data.video_ids)))
        sel = data.mask[v]
        frames = data.frames[v][sel]
        frame_video = np.repeat(np.arange(len(v)), sel.sum(axis=1))
        videos.append(video_embeddings(backbone, frames, frame_video, len(v), readout))
    video = F.normalize(torch.cat(videos), dim=-1)
    text = F.normalize(torch.cat([backbone.encode_texts(data.captions[i: i + batch_size], max_words)
                                  for i in range(0, len(data.captions), batch_size)]), dim=-1)
    sim = (text @ video.T).double().cpu().numpy()  # [C, V]
    t2v = rank_metrics(ranks_t2v(sim, data.caption_video, ties="average"))["R1"] / 100
    v2t = rank_metrics(ranks_v2t(sim.T, data.caption_video, ties="average"))["R1"] / 100
    return {"t2v_r1": t2v, "v2t_r1": v2t, "videos": len(video), "captions": len(text)}


@register_family
class TinyClip(BackboneFamily):
    """``kind: tiny``: pretrain :class:`TinyClipConfig` on the train split's frames and captions."""

    kind = "tiny"
    description = "a small CLIP pretrained here on the train split (the synthetic default)"

    def build(self, cfg: Any, inputs: BuildInputs, progress: bool = True
              ) -> tuple[Backbone, dict[str, Any], dict[str, Any]]:
        from pipeline.frames.store import FrameStore

        if inputs.frames_dir is None or inputs.captions is None:
            raise ValueError("the tiny backbone is pretrained on the frames and captions: pass both")
        tiny, options = cfg.tiny, inputs.pretrain_options
        if options is None and inputs.tags is not None:
            options = TagOptions(tags=inputs.tags)
        if tiny.uses_options and options is None:
            raise ValueError("backbone.tiny.tag_text_weight, tag_visual_weight, tag_pair_weight and fresh_fraction "
                             "need tags.parquet (the backbone stage's --tags) and, for fresh clips, the prepared "
                             "videos table: build through build_backbone(..., pretrain_options="
                             "PretrainOptions.from_files(...))")
        image_size = FrameStore(inputs.frames_dir).image_size
        train = load_video_text_set(inputs.frames_dir, inputs.captions, "train")
        if options is not None and tiny.uses_options:  # the stage always passes tags; read them when used
            train = options.attach_tags(train)
        log.info("pretraining tiny CLIP on %d train videos, %d captions", len(train.video_ids), len(train.captions))
        backbone, history = pretrain_tiny(tiny, train, image_size, inputs.max_words, progress=progress,
                                          options=options)
        log.info("tiny CLIP: %d steps in %.1f s", history["steps"], history["seconds"])
        readout = history.pop("readout")
        r1 = {"train": retrieval_r1(backbone, train, inputs.max_words, readout=readout)}
        for split in EVAL_SPLITS[1:]:
            try:
                r1[split] = retrieval_r1(backbone, load_video_text_set(inputs.frames_dir, inputs.captions, split),
                                         inputs.max_words, readout=readout)
            except ValueError as err:  # the split is absent from this dataset
                log.info("no %s evaluation: %s", split, err)
        metrics = {"steps": history["steps"], "first_epoch_loss": history["epoch_loss"][0],
                   "last_epoch_loss": history["epoch_loss"][-1], "logit_scale": history["logit_scale"], "r1": r1}
        source = {"kind": "tiny", "config": tiny.source(), "image_size": image_size,
                  "context_length": inputs.max_words}
        return backbone, source, metrics

    def rebuild(self, arch: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Backbone:
        return ClipModel.from_arch(arch, state_dict, self.kind)
