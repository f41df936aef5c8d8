"""Contrastive pretraining of a small CLIP on a video-caption set (the synthetic default).

Each step takes a batch of distinct videos; a video is the mean of the CLIP embeddings of a
few of its real frames drawn at random (a cheap temporal augmentation, and the same
frame-mean the evaluation uses), paired with a few of its captions drawn at random (more
text signal per step for little compute: captions are short). The loss is CLIP's symmetric
InfoNCE over cosine similarities with a learnt temperature, with a video's captions as its
positives.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.config import TinyClipConfig
from pipeline.backbone.data import VideoTextSet
from pipeline.backbone.encode import encode_tokens, preprocess_frames, tokenize

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps its temperature at 100


def tiny_arch(cfg: TinyClipConfig) -> ClipArch:
    return ClipArch(
        embed_dim=cfg.embed_dim, image_resolution=cfg.image_resolution,
        vision_layers=cfg.vision_layers, vision_width=cfg.vision_width,
        vision_patch_size=cfg.vision_patch_size, context_length=cfg.context_length,
        vocab_size=CLIP_VOCAB_SIZE, transformer_width=cfg.text_width,
        transformer_heads=cfg.text_heads, transformer_layers=cfg.text_layers,
    )


def video_embeddings(model: torch.nn.Module, frames: np.ndarray, frame_video: np.ndarray,
                     num_videos: int) -> torch.Tensor:
    """Mean of the frame embeddings of each video: frames ``[F,S,S,3]``, ``frame_video[F]``."""
    feats = model.encode_image(preprocess_frames(frames, model.visual.input_resolution)).float()
    index = torch.as_tensor(frame_video, dtype=torch.long)
    sums = torch.zeros(num_videos, feats.shape[1], dtype=feats.dtype).index_add_(0, index, feats)
    counts = torch.bincount(index, minlength=num_videos).clamp_min(1).unsqueeze(1)
    return sums / counts


def contrastive_loss(model: torch.nn.Module, video: torch.Tensor, text: torch.Tensor,
                     text_video: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between ``B`` videos and ``T`` captions; caption t belongs to video
    ``text_video[t]`` (default: caption i to video i).

    Text-to-video is a cross-entropy over the videos; video-to-text treats all of a video's
    captions in the batch as positives (-log of their share of the softmax mass), which
    reduces to CLIP's loss with one caption per video.
    """
    if text_video is None:
        text_video = torch.arange(len(text))
    v = F.normalize(video, dim=-1)
    t = F.normalize(text, dim=-1)
    logits = model.logit_scale.exp() * t @ v.T  # [T, B]
    t2v = F.cross_entropy(logits, text_video)
    positive = text_video.unsqueeze(1) == torch.arange(len(v)).unsqueeze(0)  # [T, B]
    columns = logits.T  # [B, T]
    v2t = (columns.logsumexp(dim=1)
           - columns.masked_fill(~positive.T, float("-inf")).logsumexp(dim=1)).mean()
    return 0.5 * (t2v + v2t)


def _optimizers(model: torch.nn.Module, cfg: TinyClipConfig) -> list[torch.optim.Optimizer]:
    """AdamW for the network; lazy (sparse) Adam for the token embedding.

    The 49408-row vocabulary holds most of the parameters but a synthetic caption set uses a
    few hundred tokens: sparse gradients make the embedding update cost those rows only.
    Weight decay applies to matrices only (not gains, biases, embeddings or the temperature).
    """
    model.token_embedding.sparse = True
    decay, plain = [], []
    for name, p in model.named_parameters():
        if name == "token_embedding.weight":
            continue
        (decay if p.ndim >= 2 and "embedding" not in name else plain).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    betas, eps = (0.9, 0.98), 1e-6  # CLIP's Adam settings
    return [torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=eps, fused=True),
            torch.optim.SparseAdam([model.token_embedding.weight], lr=cfg.lr, betas=betas, eps=eps)]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


def pretrain_tiny(cfg: TinyClipConfig, data: VideoTextSet,
                  progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a fresh tiny CLIP on ``data``; returns the eval-mode model and a history dict.

    Seeded (init, batches, frame and caption draws); on CPU with a fixed thread count the
    result is bit-for-bit reproducible. Does not touch the global torch RNG state.
    """
    num_videos = len(data.video_ids)
    if num_videos < 2:
        raise ValueError(f"contrastive pretraining needs >= 2 videos, got {num_videos}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = tiny_arch(cfg).build().float().train()
    rng = np.random.default_rng(cfg.seed)
    tokens, truncated = tokenize(data.captions, cfg.context_length)
    if truncated.any():
        log.info("%d of %d captions truncated to %d tokens", truncated.sum(), len(truncated),
                 cfg.context_length)
    caps_of = data.captions_of()
    batch = min(cfg.batch_size, num_videos)
    # Drop a last batch of one video: InfoNCE needs negatives.
    per_epoch = num_videos // batch + (1 if num_videos % batch >= 2 else 0)
    total = per_epoch * cfg.epochs
    warmup = int(cfg.warmup_frac * total)
    optimizers = _optimizers(model, cfg)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: _lr_factor(s, total, warmup))
                  for o in optimizers]
    epoch_losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="pretrain tiny CLIP", unit="step", disable=not progress,
               mininterval=1.0)
    for _ in range(cfg.epochs):
        order = rng.permutation(num_videos)
        losses = []
        for b in range(per_epoch):
            videos = order[b * batch: (b + 1) * batch]
            frames, frame_video, caption_idx, caption_video = _sample_batch(data, videos, caps_of,
                                                                            cfg, rng)
            video = video_embeddings(model, frames, frame_video, len(videos))
            text = encode_tokens(model, tokens[caption_idx])
            loss = contrastive_loss(model, video, text, caption_video)
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o, sched in zip(optimizers, schedulers):
                o.step()
                sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch_losses.append(float(np.mean(losses)))
    bar.close()
    model.token_embedding.sparse = False
    history = {"epoch_loss": epoch_losses, "steps": total, "seconds": time.perf_counter() - start,
               "logit_scale": float(model.logit_scale.detach().exp())}
    return model.eval(), history


@torch.no_grad()
def retrieval_r1(model: torch.nn.Module, data: VideoTextSet, batch_size: int = 256) -> dict[str, float]:
    """R@1 of frame-mean video embeddings against captions (t2v over captions, v2t over videos).

    A video counts as retrieved in v2t when its best caption is any of its own captions.
    """
    model.eval()
    videos = []
    per_chunk = max(1, batch_size // data.frames.shape[1])
    for start in range(0, len(data.video_ids), per_chunk):
        v = np.arange(start, min(start + per_chunk, len(data.video_ids)))
        sel = data.mask[v]
        frames = data.frames[v][sel]
        frame_video = np.repeat(np.arange(len(v)), sel.sum(axis=1))
        videos.append(video_embeddings(model, frames, frame_video, len(v)))
    video = F.normalize(torch.cat(videos), dim=-1)
    tokens, _ = tokenize(data.captions, model.context_length)
    text = F.normalize(torch.cat([encode_tokens(model, t) for t in tokens.split(batch_size)]), dim=-1)
    sim = text @ video.T  # [C, V]
    target = torch.as_tensor(data.caption_video)
    t2v = (sim.argmax(dim=1) == target).float().mean().item()
    v2t = (target[sim.argmax(dim=0)] == torch.arange(len(video))).float().mean().item()
    return {"t2v_r1": t2v, "v2t_r1": v2t, "videos": len(video), "captions": len(text)}
