"""Backbone kind ``tiny``: a small CLIP (clip-anytorch's ``CLIP`` class) pretrained here.

It gives the synthetic default meaningful frozen features without downloads. Each step takes a
batch of distinct training videos; a video is the mean of the embeddings of a few of its real
frames drawn at random (a cheap temporal augmentation, and the same frame-mean the evaluation
uses), paired with a few of its captions drawn at random. The loss is the symmetric InfoNCE of
:mod:`pipeline.losses` with a video's captions as its positives, the optimiser uses the training
code's parameter-decay rule and warmup-cosine schedule (:mod:`pipeline.train.optim`), and the
report is R@1 from :mod:`pipeline.retrieval`: nothing of the head's training is re-implemented.

Two sizes are not knobs here: the input resolution is the frames stage's ``image_size`` (read
from the frames directory) and the text context is ``text.max_words``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.base import Backbone, BackboneFamily, BuildInputs, register_family
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.data import VideoTextSet, load_video_text_set
from pipeline.config import to_dict
from pipeline.losses import multi_positive_info_nce
from pipeline.model.config import MAX_LOGIT_SCALE
from pipeline.retrieval.metrics import rank_metrics, ranks_t2v, ranks_v2t
from pipeline.train.optim import WarmupCosine, is_no_decay

log = logging.getLogger(__name__)

EVAL_SPLITS = ("train", "val", "test")


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


def video_embeddings(backbone: Backbone, frames: np.ndarray, frame_video: np.ndarray,
                     num_videos: int) -> torch.Tensor:
    """Mean of the frame embeddings of each video: frames ``[F,S,S,3]``, ``frame_video[F]``."""
    feats = backbone.encode_frames(frames)
    index = torch.as_tensor(frame_video, dtype=torch.long, device=feats.device)
    sums = torch.zeros(num_videos, feats.shape[1], dtype=feats.dtype, device=feats.device).index_add_(0, index, feats)
    counts = torch.bincount(index, minlength=num_videos).clamp_min(1).unsqueeze(1)
    return sums / counts


def contrastive_loss(logit_scale: torch.Tensor, video: torch.Tensor, text: torch.Tensor,
                     text_video: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities of ``T`` captions and ``B`` videos; caption t
    belongs to video ``text_video[t]`` (default: caption i to video i)."""
    if text_video is None:
        text_video = torch.arange(len(text))
    logits = logit_scale.exp() * F.normalize(text, dim=-1) @ F.normalize(video, dim=-1).T  # [T, B]
    return multi_positive_info_nce(logits, text_video)["total"]


def _optimizers(model: torch.nn.Module, cfg: TinyClipConfig) -> list[torch.optim.Optimizer]:
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
    return (np.concatenate(frames), np.asarray(frame_video), np.asarray(caption_idx),
            torch.as_tensor(caption_video))


def pretrain_tiny(cfg: TinyClipConfig, data: VideoTextSet, image_size: int, context_length: int,
                  progress: bool = True) -> tuple[ClipModel, dict[str, Any]]:
    """Train a fresh tiny CLIP on ``data``; returns the eval-mode backbone and a history dict.

    Seeded (init, batches, frame and caption draws); on CPU with a fixed thread count the
    result is bit-for-bit reproducible. Does not touch the global torch RNG state.
    """
    num_videos = len(data.video_ids)
    if num_videos < 2:
        raise ValueError(f"contrastive pretraining needs >= 2 videos, got {num_videos}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        backbone = ClipModel(tiny_arch(cfg, image_size, context_length).build().float(), "tiny").train()
    model = backbone.model
    rng = np.random.default_rng(cfg.seed)
    text = backbone.tokenize(data.captions, context_length)
    if text.truncated.any():
        log.info("%d of %d captions truncated to %d tokens", text.truncated.sum(), len(text), context_length)
    caps_of = data.captions_of()
    batch = min(cfg.batch_size, num_videos)
    # Drop a last batch of one video: InfoNCE needs negatives.
    per_epoch = num_videos // batch + (1 if num_videos % batch >= 2 else 0)
    total = per_epoch * cfg.epochs
    optimizers = _optimizers(model, cfg)
    schedule = WarmupCosine(int(cfg.warmup_frac * total), total)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in optimizers]
    epoch_losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="pretrain tiny CLIP", unit="step", disable=not progress, mininterval=1.0)
    for _ in range(cfg.epochs):
        order = rng.permutation(num_videos)
        losses = []
        for b in range(per_epoch):
            videos = order[b * batch: (b + 1) * batch]
            frames, frame_video, caption_idx, caption_video = _sample_batch(data, videos, caps_of, cfg, rng)
            video = video_embeddings(backbone, frames, frame_video, len(videos))
            picked = text.rows(caption_idx)
            loss = contrastive_loss(model.logit_scale, video, backbone.encode_text(picked.ids, picked.mask),
                                    caption_video)
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
               "logit_scale": float(model.logit_scale.detach().exp())}
    return backbone.eval(), history


@torch.no_grad()
def retrieval_r1(backbone: Backbone, data: VideoTextSet, max_words: int, batch_size: int = 256) -> dict[str, float]:
    """R@1 (fractions) of frame-mean video embeddings against captions: t2v over captions, v2t
    over videos (a video is retrieved when its best caption is any of its own)."""
    backbone.eval()
    videos = []
    per_chunk = max(1, batch_size // data.frames.shape[1])
    for start in range(0, len(data.video_ids), per_chunk):
        v = np.arange(start, min(start + per_chunk, len(data.video_ids)))
        sel = data.mask[v]
        frames = data.frames[v][sel]
        frame_video = np.repeat(np.arange(len(v)), sel.sum(axis=1))
        videos.append(video_embeddings(backbone, frames, frame_video, len(v)))
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
        image_size = FrameStore(inputs.frames_dir).image_size
        train = load_video_text_set(inputs.frames_dir, inputs.captions, "train")
        log.info("pretraining tiny CLIP on %d train videos, %d captions", len(train.video_ids), len(train.captions))
        backbone, history = pretrain_tiny(cfg.tiny, train, image_size, inputs.max_words, progress=progress)
        log.info("tiny CLIP: %d steps in %.1f s", history["steps"], history["seconds"])
        r1 = {"train": retrieval_r1(backbone, train, inputs.max_words)}
        for split in EVAL_SPLITS[1:]:
            try:
                r1[split] = retrieval_r1(backbone, load_video_text_set(inputs.frames_dir, inputs.captions, split),
                                         inputs.max_words)
            except ValueError as err:  # the split is absent from this dataset
                log.info("no %s evaluation: %s", split, err)
        metrics = {"steps": history["steps"], "first_epoch_loss": history["epoch_loss"][0],
                   "last_epoch_loss": history["epoch_loss"][-1], "logit_scale": history["logit_scale"], "r1": r1}
        source = {"kind": "tiny", "config": to_dict(cfg.tiny), "image_size": image_size,
                  "context_length": inputs.max_words}
        return backbone, source, metrics

    def rebuild(self, arch: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Backbone:
        return ClipModel.from_arch(arch, state_dict, self.kind)
