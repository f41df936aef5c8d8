"""Contrastive pretraining of a small CLIP on a video-caption set (the synthetic default).

Each step takes a batch of distinct videos; a video is read out from the CLIP embeddings of a
few of its real frames drawn at random (a cheap temporal augmentation), paired with a few of
its captions drawn at random (more text signal per step for little compute: captions are
short). The loss is CLIP's symmetric InfoNCE over cosine similarities with a learnt
temperature, with a video's captions as its positives.

The video readout (``temporal``) decides what the frozen features can learn to show:

- ``mean``: the frame mean. Motion, growth/shrinking, appearing, disappearing and colour
  changes are invisible to it (a shape moving left and one moving right have the same mean),
  so neither the image tower is pushed to encode where and how big things are nor the text
  tower to tell "moves left" from "moves right": the downstream head, which reads frozen
  features, then cannot recover those facts.
- ``delta``: the frame mean plus a learnt linear map of the change between the later and the
  earlier half of the (time-ordered) frames, ``mean + W (mean_late - mean_early)``. It makes
  per-frame features carry what changes over time in a linearly readable form, and the text
  tower separate the words that describe it. ``W`` (zero-initialised, so training starts from
  the frame mean) belongs to pretraining only: the saved backbone is a plain CLIP, and the
  head's temporal transformer learns its own readout.

Tag language (``tag_text_weight > 0``): a real CLIP text encoder already knows what "leftward
motion" or "expansion" mean; a tiny one trained on the synthetic captions alone has never seen
those words, so MAC-VR's tag sentences would reach the head as noise. An auxiliary text-to-text
InfoNCE pairs each sampled caption with a sentence of its own *textual* tags (the caption
tagger's output, built from the caption's words; never the visual tags, so the image tower
learns nothing from tags), weighted by ``tag_text_weight``. Both variants use the same backbone.

Visual tag language (``tag_visual_weight > 0``): MAC-VR's visual tags are keyword lists ("a video
of red, circle, leftward motion, ..."), a text form the captions never take. A real CLIP saw
such lists as alt-text next to images; the tiny one learns them from a second InfoNCE between
each video's embedding and a sentence of ``tags_per_sentence`` of its visual tags (training
videos: their tagger tags from ``tags.parquet``; fresh clips: written from the generated scene
in the offline visual tagger's vocabulary, one tagger answer at a random temperature, as the
``oracle`` tag control writes them). Tags are inputs the pipeline already has for those videos;
the test split is never touched.

Fresh clips (``fresh_fraction > 0``): that share of every batch is newly generated synthetic
clips (:mod:`pipeline.backbone.stream`) instead of training-split clips, so the backbone stops
memorising the 480 training videos. The step count stays ``epochs`` x the split's batches.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.config import TinyClipConfig
from pipeline.backbone.data import VideoTextSet
from pipeline.backbone.encode import encode_tokens, preprocess_frames, tokenize
from pipeline.backbone.stream import ClipGeometry, fresh_batch
from pipeline.features.tags import draw_tags, item_rng, tag_sentence

if TYPE_CHECKING:
    from pipeline.tags.offline_visual import OfflineVisualConfig

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


class VideoReadout(torch.nn.Module):
    """Pretraining-only video embedding from time-ordered frame embeddings (see module doc)."""

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
        index = torch.as_tensor(frame_video, dtype=torch.long)
        counts = torch.bincount(index, minlength=num_videos).clamp_min(1)
        mean = torch.zeros(num_videos, feats.shape[1], dtype=feats.dtype).index_add_(0, index, feats)
        mean = mean / counts.unsqueeze(1).to(feats.dtype)
        if self.delta is None:
            return mean
        # Position of each frame within its video: frames of a video are contiguous.
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(len(index)) - starts[index]
        n = counts[index]
        half = n // 2  # odd counts: the middle frame is in neither half
        late, early = pos >= n - half, pos < half
        weight = (late.to(feats.dtype) - early.to(feats.dtype)) / half.clamp_min(1).to(feats.dtype)
        change = torch.zeros_like(mean).index_add_(0, index, feats * weight.unsqueeze(1))
        return mean + self.delta(change)


def video_embeddings(model: torch.nn.Module, frames: np.ndarray, frame_video: np.ndarray,
                     num_videos: int, readout: VideoReadout | None = None) -> torch.Tensor:
    """Video embeddings from frames ``[F,S,S,3]`` grouped by video in time order, ``frame_video[F]``:
    the frame mean, or ``readout``'s."""
    feats = model.encode_image(preprocess_frames(frames, model.visual.input_resolution)).float()
    return (readout or VideoReadout(feats.shape[1], "mean"))(feats, frame_video, num_videos)


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


TAG_DRAWS = 4  # pre-tokenised tag sentences per caption for the tag-language term


def tag_sentence_tokens(caption_tags: list[list[str]], caption_ids: list[str], per_sentence: int,
                        seed: int, context_length: int, modality: str = "textual") -> torch.Tensor:
    """``[C, TAG_DRAWS, L]`` tokens of random ``per_sentence``-tag sentences of each item
    (drawn as the features stage draws its training sentences)."""
    sentences = []
    for item, tags in zip(caption_ids, caption_tags):
        rng = item_rng(seed, f"backbone-{modality}", item)
        sentences += [tag_sentence(draw_tags(tags, per_sentence, rng)) for _ in range(TAG_DRAWS)]
    tokens, _ = tokenize(sentences, context_length)
    return tokens.view(len(caption_tags), TAG_DRAWS, -1)


def text_pair_loss(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between two matched sets of text embeddings (row i with row i)."""
    logits = model.logit_scale.exp() * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class FreshTagger:
    """Visual tags of fresh clips, written from their scenes in the offline tagger's vocabulary."""

    TEMPERATURES = (0.7, 0.8, 0.9, 1.0)  # tag_video's four instances

    def __init__(self, cfg: "OfflineVisualConfig") -> None:
        from pipeline.tags.lexicon import load_lexicon

        self.cfg, self.lexicon = cfg, load_lexicon(cfg.lexicon)

    def sentences(self, scenes: list[dict], per_sentence: int, rng: np.random.Generator) -> list[str]:
        from pipeline.features.tag_control import scene_visual_tags

        out = []
        for scene in scenes:
            temperature = self.TEMPERATURES[int(rng.integers(len(self.TEMPERATURES)))]
            tags = scene_visual_tags(scene, temperature, int(rng.integers(2**31)), self.lexicon, self.cfg)
            out.append(tag_sentence(draw_tags(tags, per_sentence, rng)))
        return out


def _optimizers(model: torch.nn.Module, readout: torch.nn.Module,
                cfg: TinyClipConfig) -> list[torch.optim.Optimizer]:
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
    plain.extend(readout.parameters())  # W starts at zero and is meant to grow: no decay
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
    if not frames:  # an all-fresh batch takes no split videos
        shape = (0, *data.frames.shape[2:])
        return (np.empty(shape, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64),
                torch.empty(0, dtype=torch.long))
    return (np.concatenate(frames), np.asarray(frame_video), np.asarray(caption_idx),
            torch.as_tensor(caption_video))


def _split_videos(num_videos: int, rng: np.random.Generator):
    """Training-split video indices, one shuffled pass after another."""
    while True:
        yield from rng.permutation(num_videos)


def pretrain_tiny(cfg: TinyClipConfig, data: VideoTextSet, progress: bool = True,
                  geometry: ClipGeometry | None = None,
                  visual_tagger: "OfflineVisualConfig | None" = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a fresh tiny CLIP on ``data``; returns the eval-mode model and a history dict
    (``history["readout"]`` is the trained pretraining-only :class:`VideoReadout`).

    Seeded (init, batches, frame and caption draws); on CPU with a fixed thread count the
    result is bit-for-bit reproducible. Does not touch the global torch RNG state.
    ``geometry`` (the prepared clips' size, frame rate and lengths) is needed when
    ``cfg.fresh_fraction > 0``; ``visual_tagger`` (params ``tag_video.offline``) when
    ``cfg.tag_visual_weight > 0`` and fresh clips need their tags written.
    """
    num_videos = len(data.video_ids)
    if num_videos < 2:
        raise ValueError(f"contrastive pretraining needs >= 2 videos, got {num_videos}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = tiny_arch(cfg).build().float().train()
        readout = VideoReadout(cfg.embed_dim, cfg.temporal)
    rng = np.random.default_rng(cfg.seed)
    tokens, truncated = tokenize(data.captions, cfg.context_length)
    if truncated.any():
        log.info("%d of %d captions truncated to %d tokens", truncated.sum(), len(truncated),
                 cfg.context_length)
    caps_of = data.captions_of()
    tag_tokens = None
    if cfg.tag_text_weight > 0:
        if data.caption_tags is None or data.caption_ids is None:
            raise ValueError("tiny.tag_text_weight > 0 needs the captions' textual tags (tags.parquet)")
        tag_tokens = tag_sentence_tokens(data.caption_tags, data.caption_ids, cfg.tags_per_sentence,
                                         cfg.seed, cfg.context_length)
    video_tag_tokens = None
    if cfg.tag_visual_weight > 0:
        if data.video_tags is None:
            raise ValueError("tiny.tag_visual_weight > 0 needs the videos' visual tags (tags.parquet)")
        video_tag_tokens = tag_sentence_tokens(data.video_tags, data.video_ids, cfg.tags_per_sentence,
                                               cfg.seed, cfg.context_length, "visual")
    fresh_tagger = None
    if cfg.tag_visual_weight > 0 and cfg.fresh_fraction > 0:
        if visual_tagger is None:
            raise ValueError("tiny.tag_visual_weight > 0 with fresh clips needs the visual tagger's "
                             "config (tag_video.offline) to write their tags")
        fresh_tagger = FreshTagger(visual_tagger)
    batch = min(cfg.batch_size, num_videos)
    # Drop a last batch of one video: InfoNCE needs negatives.
    per_epoch = num_videos // batch + (1 if num_videos % batch >= 2 else 0)
    total = per_epoch * cfg.epochs
    n_fresh = int(round(cfg.fresh_fraction * cfg.batch_size))
    if n_fresh and geometry is None:
        raise ValueError("tiny.fresh_fraction > 0 needs the clip geometry of the prepared videos")
    n_split = cfg.batch_size - n_fresh if n_fresh else batch
    split_order = _split_videos(num_videos, rng)
    warmup = int(cfg.warmup_frac * total)
    optimizers = _optimizers(model, readout, cfg)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: _lr_factor(s, total, warmup))
                  for o in optimizers]
    epoch_losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc="pretrain tiny CLIP", unit="step", disable=not progress,
               mininterval=1.0)
    step = 0
    for _ in range(cfg.epochs):
        if not n_fresh:
            order = rng.permutation(num_videos)
        losses = []
        for b in range(per_epoch):
            if n_fresh:
                videos = np.array([next(split_order) for _ in range(n_split)], dtype=np.int64)
            else:
                videos = order[b * batch: (b + 1) * batch]
            frames, frame_video, caption_idx, caption_video = _sample_batch(data, videos, caps_of,
                                                                            cfg, rng)
            text_tokens = tokens[caption_idx]
            n_videos = len(videos)
            vtag_tokens = None
            if video_tag_tokens is not None and n_videos:
                draw = torch.as_tensor(rng.integers(TAG_DRAWS, size=n_videos))
                vtag_tokens = video_tag_tokens[torch.as_tensor(videos), draw]
            if n_fresh:
                fresh = fresh_batch(geometry, n_fresh, cfg.frames_per_sample, cfg.captions_per_sample,
                                    cfg.seed, step, cfg.fresh_full_captions, cfg.fresh_siblings)
                frames = np.concatenate([frames, fresh.frames]) if len(frames) else fresh.frames
                frame_video = np.concatenate([frame_video, fresh.frame_video + n_videos])
                fresh_tokens, _ = tokenize(fresh.captions, cfg.context_length)
                text_tokens = torch.cat([text_tokens, fresh_tokens])
                caption_video = torch.cat([caption_video, torch.as_tensor(fresh.caption_video) + n_videos])
                if fresh_tagger is not None:
                    fresh_vtags, _ = tokenize(fresh_tagger.sentences(fresh.scenes, cfg.tags_per_sentence, rng),
                                              cfg.context_length)
                    vtag_tokens = fresh_vtags if vtag_tokens is None else torch.cat([vtag_tokens, fresh_vtags])
                n_videos += n_fresh
            step += 1
            video = video_embeddings(model, frames, frame_video, n_videos, readout)
            text = encode_tokens(model, text_tokens)
            loss = contrastive_loss(model, video, text, caption_video)
            if tag_tokens is not None and len(caption_idx) > 1:
                draw = torch.as_tensor(rng.integers(TAG_DRAWS, size=len(caption_idx)))
                tags = encode_tokens(model, tag_tokens[torch.as_tensor(caption_idx), draw])
                loss = loss + cfg.tag_text_weight * text_pair_loss(model, text[:len(caption_idx)], tags)
            if vtag_tokens is not None and n_videos > 1:
                vtags = encode_tokens(model, vtag_tokens)
                loss = loss + cfg.tag_visual_weight * contrastive_loss(model, video, vtags)
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
               "logit_scale": float(model.logit_scale.detach().exp()), "readout": readout.eval()}
    return model.eval(), history


@torch.no_grad()
def retrieval_r1(model: torch.nn.Module, data: VideoTextSet, batch_size: int = 256,
                 readout: VideoReadout | None = None) -> dict[str, float]:
    """R@1 of video embeddings (frame mean, or ``readout`` over all real frames) against
    captions (t2v over captions, v2t over videos).

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
        videos.append(video_embeddings(model, frames, frame_video, len(v), readout))
    video = F.normalize(torch.cat(videos), dim=-1)
    tokens, _ = tokenize(data.captions, model.context_length)
    text = F.normalize(torch.cat([encode_tokens(model, t) for t in tokens.split(batch_size)]), dim=-1)
    sim = text @ video.T  # [C, V]
    target = torch.as_tensor(data.caption_video)
    t2v = (sim.argmax(dim=1) == target).float().mean().item()
    v2t = (target[sim.argmax(dim=0)] == torch.arange(len(video))).float().mean().item()
    return {"t2v_r1": t2v, "v2t_r1": v2t, "videos": len(video), "captions": len(text)}
