"""Typed configuration of one training run (``params.yaml: train`` + one entry of ``variants``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from pipeline.losses import LossParams
from pipeline.model.config import ModelParams


@dataclass(frozen=True)
class TrainConfig:
    """How the head (and, in ``finetune`` mode, CLIP) is trained.

    mode: ``cached`` trains the head on the features stage's frozen CLIP features (fp16,
        memory-mapped; tags = one of the R pre-encoded draws per pair, per epoch, at random);
        ``finetune`` encodes frames, captions and freshly drawn tag sentences through CLIP at
        every step and trains CLIP too, at ``clip_lr`` (official recipe; meant for GPUs).
    epochs, batch_size: passes over the training captions; the *global* contrastive batch
        (split evenly over DDP processes). Official: 128 (MSR-VTT), 64 (paragraph datasets).
    lr / clip_lr: peak learning rates of the new modules / of CLIP (official 1e-4 / 1e-7).
    weight_decay: decoupled decay of weight matrices (0.2); see :mod:`pipeline.train.optim`.
    adam_betas, adam_eps: (0.9, 0.98) and 1e-6 as the official BertAdam / CLIP.
    warmup_fraction: share of the steps with a linear warmup, then cosine decay (0.1).
    grad_clip: max global gradient L2 norm (1.0 official).
    seed: seeds the head's initialisation, data order, tag draws and dropout.
    device: ``auto`` (GPU if available), ``cpu`` or ``cuda``.
    precision: ``fp32``, or ``bf16`` autocast of the training forward (CLIP encoders, head,
        losses; reductions stay fp32 as autocast keeps them), for GPUs: the official code runs
        CLIP in fp16. Weights, optimiser state and the per-epoch check stay fp32.
    torch_threads: intra-op CPU threads per process (``torch.set_num_threads``); 0 leaves
        PyTorch's default. Small models on a shared 2-core box run many times faster on 1.
    num_workers: DataLoader worker processes (0 = load in the training process).
    checkpoint_every: write the resumable ``last.pt`` every this many epochs (and at the end).
    tags_per_item: N tags drawn per item per load (finetune mode; cached mode uses the R
        draws of N tags the features stage encoded).
    log_every: log the step metrics (mean over the last ``log_every`` steps) this often.
    monitor_videos: each epoch, score the first caption of this many training videos against
        those videos (fixed tag draw) and log R@1 t2v/v2t; 0 switches it off.
    init_temporal_from_backbone: initialise the temporal transformer from the backbone's text
        layers and position embedding (the official trick); needs matching widths.
    optimizer: ``adamw`` (default) | ``bertadam`` (official: no bias correction); see
        :mod:`pipeline.train.optim`, like ``schedule`` (``warmup_cosine`` | ``official``),
        ``schedule_epochs`` (the schedule's length in epochs; null = ``epochs``; official: 5 whatever
        the epoch count) and ``decay_rule`` (``matrices`` | ``official`` name rule).
    augment: ``none`` | ``randaugment`` (finetune mode: the official MSR-VTT RandAugment
        rand-m7-n4-mstd0.5-inc1, one draw per video; see :mod:`pipeline.train.augment`).
    logit_scale: who owns the InfoNCE temperature lambda. ``head``: a parameter of the head
        (``model.init_logit_scale``), trained at ``lr`` without decay, clamped at ln 100 after each
        step. ``backbone``: the official treatment: the backbone's own ``logit_scale``
        (pretrained CLIP: ln 100), in the backbone's parameter group (``clip_lr``; decayed under
        ``decay_rule: official``, as officially) in finetune mode, frozen in cached mode.
    model / loss: the head and the loss weights (``model.tags`` and ``loss.alpha_align`` are set
        by the variant: see :mod:`pipeline.train.variants`).
    """

    mode: Literal["cached", "finetune"]
    epochs: int
    batch_size: int
    lr: float
    clip_lr: float
    weight_decay: float
    adam_betas: tuple[float, float]
    adam_eps: float
    warmup_fraction: float
    grad_clip: float
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["fp32", "bf16"]
    torch_threads: int
    num_workers: int
    checkpoint_every: int
    tags_per_item: int
    log_every: int
    monitor_videos: int
    init_temporal_from_backbone: bool
    optimizer: Literal["adamw", "bertadam"]
    schedule: Literal["warmup_cosine", "official"]
    schedule_epochs: Optional[int]
    decay_rule: Literal["matrices", "official"]
    augment: Literal["none", "randaugment"]
    logit_scale: Literal["head", "backbone"]
    model: ModelParams
    loss: LossParams

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"train config: {msg}")

        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be >= 2 (a contrastive batch needs negatives), "
                                   f"got {self.batch_size}")
        for name in ("lr", "clip_lr", "adam_eps"):
            value = getattr(self, name)
            need(math.isfinite(value) and value > 0, f"{name} must be a positive number, got {value}")
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be >= 0, got {self.weight_decay}")
        need(all(0 <= b < 1 for b in self.adam_betas), f"adam_betas must lie in [0, 1), got {self.adam_betas}")
        need(0 <= self.warmup_fraction < 1, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        need(math.isfinite(self.grad_clip) and self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.torch_threads >= 0, f"torch_threads must be >= 0 (0 = PyTorch's default), "
                                      f"got {self.torch_threads}")
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(self.tags_per_item >= 1, f"tags_per_item must be >= 1, got {self.tags_per_item}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.monitor_videos == 0 or self.monitor_videos >= 2,
             f"monitor_videos must be 0 (off) or >= 2, got {self.monitor_videos}")
        need(self.schedule_epochs is None or self.schedule_epochs >= 1,
             f"schedule_epochs must be null (= epochs) or >= 1, got {self.schedule_epochs}")
        need(self.logit_scale in ("head", "backbone"),
             f"logit_scale must be head or backbone, got {self.logit_scale!r}")

    @property
    def uses_tags(self) -> bool:
        return bool(self.model.tags)
