"""The training run: data, model, optimiser, resume, epochs, checkpoints, logs.

``train(...)`` works the same in one process and under ``torchrun`` (see
:mod:`pipeline.train.distributed`); only rank 0 logs and writes files. Output directory::

    last.pt         resumable state, every ``checkpoint_every`` epochs (removed after success)
    checkpoint.pt   the final resumable state (optimiser, scheduler, RNG included)
    model.pt        the final weights + config, for evaluate / search (``load_trained``)

Resume (``resume="auto"``, the default): a ``last.pt`` whose config, process count and input
fingerprint match the current run is continued from its epoch; any mismatch starts afresh
(with a log line saying why). ``"always"`` makes a missing or mismatched ``last.pt`` an error;
``"never"`` ignores it. A resumed run ends with the same weights as an uninterrupted one
(same data order, tag draws and RNG streams: all are functions of the seed and the epoch, or
restored from the checkpoint).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.config import to_dict
from pipeline.model import MacVR
from pipeline.train import checkpoint as ckpt
from pipeline.train.config import TrainConfig, Variant
from pipeline.train.data import (CachedFeatureSet, FrameTextSet, cached_pairs, finetune_pairs, make_loader,
                                 tag_lists)
from pipeline.train.distributed import DistContext, all_reduce_mean, barrier, init_distributed, shutdown
from pipeline.train.livelog import LiveLog
from pipeline.train.monitor import score_slice, slice_recall
from pipeline.train.optim import build_optimizer, build_scheduler
from pipeline.train.trainable import Trainable

log = logging.getLogger(__name__)

Resume = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class TrainInputs:
    """Input paths. ``cached``: features (+ backbone for the temporal init). ``finetune``: frames,
    captions, backbone, and tags for macvr."""

    features: Path | None = None
    frames: Path | None = None
    captions: Path | None = None
    tags: Path | None = None
    backbone: Path | None = None

    def check(self, config: TrainConfig) -> None:
        need = {"cached": ["features"], "finetune": ["frames", "captions", "backbone"]}[config.mode]
        if config.mode == "finetune" and (config.model.use_visual_tags or config.model.use_textual_tags):
            need.append("tags")
        if config.init_temporal_from_clip:
            need.append("backbone")
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"train mode {config.mode!r} (variant {config.model.variant}) needs "
                             + ", ".join(f"--{m}" for m in missing))

    def used(self, config: TrainConfig) -> list[Path]:
        """The inputs this run reads (for the resume fingerprint)."""
        if config.mode == "cached":
            paths = [self.features] + ([self.backbone] if config.init_temporal_from_clip else [])
        else:
            uses_tags = config.model.use_visual_tags or config.model.use_textual_tags
            paths = [self.frames, self.captions, self.backbone] + ([self.tags] if uses_tags else [])
        return [p for p in paths if p is not None]


@dataclass
class _Run:
    """Everything one run builds before its first step."""

    ctx: DistContext
    config: TrainConfig
    variant: str
    trainable: Trainable
    dataset: Any
    loader: Any
    sampler: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    monitor_indices: Any
    fingerprint: str
    steps_per_epoch: int


def _build_data(config: TrainConfig, inputs: TrainInputs, clip_model: torch.nn.Module | None):
    if config.mode == "cached":
        pairs = cached_pairs(inputs.features)
        dataset = CachedFeatureSet(inputs.features, pairs, config.seed)
        embed_dim, frames = dataset.embed_dim, dataset.num_frames
    else:
        pairs, texts = finetune_pairs(inputs.frames, inputs.captions)
        m = config.model
        visual = tag_lists(inputs.tags, pairs.video_ids, "visual") if m.use_visual_tags else None
        textual = tag_lists(inputs.tags, list(pairs.caption_ids), "textual") if m.use_textual_tags else None
        dataset = FrameTextSet(inputs.frames, pairs, texts, visual, textual, clip_model.context_length,
                               config.tags_per_item, config.seed)
        embed_dim, frames = int(clip_model.text_projection.shape[1]), dataset.arrays["frames"].shape[1]
    if embed_dim != config.model.embed_dim:
        raise ValueError(f"train.model.embed_dim is {config.model.embed_dim} but the CLIP features are "
                         f"{embed_dim}-dimensional")
    if frames > config.model.max_frames:
        raise ValueError(f"videos have {frames} frame slots but train.model.max_frames is {config.model.max_frames}")
    return pairs, dataset


def _check_same_backbone(backbone: Path, meta: dict[str, Any], features: Path) -> None:
    """The temporal init must come from the CLIP that encoded the cached features."""
    from pipeline.backbone.io import file_sha256

    want = meta.get("backbone_sha256")
    if want is not None and file_sha256(backbone) != want:
        raise ValueError(f"{backbone} is not the CLIP that encoded {features} (its meta.json names "
                         f"backbone sha256 {want}); pass the same --backbone the features stage used")


def _build(config: TrainConfig, variant: str, inputs: TrainInputs, ctx: DistContext) -> _Run:
    from pipeline.train.checkpoint import inputs_fingerprint

    clip_model = None
    init_clip = None
    if config.mode == "finetune" or config.init_temporal_from_clip:
        from pipeline.backbone.io import load_clip

        init_clip = load_clip(inputs.backbone, "cpu")
        if config.mode == "finetune":
            clip_model = init_clip.train()
    pairs, dataset = _build_data(config, inputs, clip_model)
    torch.manual_seed(config.seed)  # the same initial head on every rank, whatever was loaded before
    head = MacVR(config.model)
    if config.init_temporal_from_clip:
        if config.mode == "cached":
            _check_same_backbone(inputs.backbone, dataset.meta, inputs.features)
        head.init_from_clip(init_clip)
    trainable = Trainable(head, clip_model, config.loss).to(ctx.device)
    loader, sampler = make_loader(dataset, config.batch_size, ctx, config.seed, config.num_workers)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(trainable, config.lr, config.clip_lr, config.weight_decay,
                                tuple(config.adam_betas), config.adam_eps)
    scheduler = build_scheduler(optimizer, config.epochs * steps_per_epoch, config.warmup_fraction)
    monitor = pairs.first_caption_per_video(config.monitor_videos) if config.monitor_videos else None
    if monitor is not None and len(monitor) < 2:
        monitor = None
    return _Run(ctx=ctx, config=config, variant=variant, trainable=trainable, dataset=dataset, loader=loader,
                sampler=sampler, optimizer=optimizer, scheduler=scheduler, monitor_indices=monitor,
                fingerprint=inputs_fingerprint(inputs.used(config)), steps_per_epoch=steps_per_epoch)


def _state(run: _Run, epoch: int, global_step: int, metrics: dict[str, float], kind: str) -> dict[str, Any]:
    t = run.trainable
    payload: dict[str, Any] = {
        "kind": kind, "variant": run.variant, "config": to_dict(run.config), "epoch": epoch,
        "global_step": global_step, "world_size": run.ctx.world_size, "fingerprint": run.fingerprint,
        "model": ckpt.cpu_state_dict(t.head), "clip": ckpt.clip_payload(t.clip),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if kind == "resume":
        payload.update(optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                       rng=ckpt.rng_state(run.ctx.device))
    return payload


def _resume_problem(payload: dict[str, Any], run: _Run) -> str | None:
    """Why ``payload`` cannot continue ``run`` (None when it can)."""
    if payload.get("kind") != "resume":
        return "it is not a resumable checkpoint"
    if payload["config"] != to_dict(run.config) or payload["variant"] != run.variant:
        return "its config differs from the current params"
    if payload["world_size"] != run.ctx.world_size:
        return f"it was written by {payload['world_size']} processes, this run has {run.ctx.world_size}"
    if payload["fingerprint"] != run.fingerprint:
        return "the input files changed since it was written"
    if payload["global_step"] != payload["epoch"] * run.steps_per_epoch:
        return "its step count does not match the current number of steps per epoch"
    return None


def _try_resume(run: _Run, path: Path, mode: Resume) -> tuple[int, int, dict[str, float]]:
    """Load ``path`` into ``run`` when allowed; returns (start epoch, global step, metrics)."""
    if mode == "never" or (mode == "auto" and not path.exists()):
        return 0, 0, {}
    payload = ckpt.load(path)
    problem = _resume_problem(payload, run)
    if problem is not None:
        if mode == "always":
            raise ckpt.CheckpointError(f"{path}: cannot resume: {problem}")
        if run.ctx.is_main:
            log.warning("%s: not resuming (%s); training from scratch", path, problem)
        return 0, 0, {}
    run.trainable.head.load_state_dict(payload["model"])
    if run.trainable.clip is not None:
        run.trainable.clip.load_state_dict(payload["clip"]["state_dict"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    ckpt.set_rng_state(payload["rng"], run.ctx.device)
    if run.ctx.is_main:
        log.info("resuming from %s at epoch %d (step %d)", path, payload["epoch"], payload["global_step"])
    return int(payload["epoch"]), int(payload["global_step"]), dict(payload["metrics"])


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _monitor(run: _Run) -> dict[str, float]:
    if run.monitor_indices is None:
        return {}
    batch = run.dataset.fixed_batch(run.monitor_indices)
    return slice_recall(score_slice(run.trainable, batch, run.ctx.device))


def _run_epoch(run: _Run, model: torch.nn.Module, epoch: int, global_step: int,
               live: LiveLog) -> tuple[int, dict[str, float]]:
    """One pass over the training pairs; returns the new global step and the epoch's mean terms."""
    cfg, ctx = run.config, run.ctx
    run.sampler.set_epoch(epoch)
    run.dataset.set_epoch(epoch)
    run.trainable.train()
    params = [p for p in run.trainable.parameters() if p.requires_grad]
    window: dict[str, float] = {}
    totals: dict[str, float] = {}
    bar = tqdm(run.loader, desc=f"{run.variant} epoch {epoch + 1}/{cfg.epochs}", disable=not ctx.is_main,
               leave=False, dynamic_ncols=True)
    autocast = cfg.precision == "bf16"
    for i, batch in enumerate(bar):
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=autocast):
            terms = model(_to_device(batch, ctx.device))
        loss = terms["total"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        # One device sync for all the scalars (not one per term); grad_norm is before clipping.
        names = [*terms, "grad_norm"]
        scalars = torch.stack([*(v.detach().float() for v in terms.values()), grad_norm.detach().float()])
        values = dict(zip(names, scalars.tolist()))
        if not (math.isfinite(values["total"]) and math.isfinite(values["grad_norm"])):
            # Stop before the update: the weights (and last.pt) stay as they were.
            raise FloatingPointError(f"non-finite loss or gradient at epoch {epoch + 1}, step {global_step + 1}: "
                                     f"{values}")
        lrs = {f"lr/{g['name'].replace('/', '_')}": g["lr"] for g in run.optimizer.param_groups}
        run.optimizer.step()
        run.scheduler.step()
        run.trainable.clamp_logit_scale()
        global_step += 1
        for k, v in values.items():
            window[k] = window.get(k, 0.0) + v
            totals[k] = totals.get(k, 0.0) + v
        bar.set_postfix(loss=f"{values['total']:.4f}")
        if (i + 1) % cfg.log_every == 0 or i + 1 == run.steps_per_epoch:
            n = (i % cfg.log_every) + 1
            step_metrics = {f"train/{k}": v / n for k, v in window.items()}
            step_metrics.update(lrs)  # the rates this step used
            step_metrics["train/logit_scale"] = float(run.trainable.head.logit_scale_value.detach())
            if ctx.is_main:
                live.log(global_step, step_metrics)
            window = {}
    bar.close()
    return global_step, {k: v / run.steps_per_epoch for k, v in totals.items()}


def train(config: TrainConfig, variant: Variant, inputs: TrainInputs, out_dir: str | Path,
          live_dir: str | Path | None = None, resume: Resume = "auto") -> dict[str, float]:
    """Train ``variant`` with ``config``; write checkpoints to ``out_dir``; return final metrics."""
    config = config.with_variant(variant)
    inputs.check(config)
    out_dir = Path(out_dir)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    ctx = init_distributed(config.device)
    try:
        return _train(config, variant, inputs, out_dir, live_dir, resume, ctx)
    finally:
        shutdown(ctx)


def _train(config: TrainConfig, variant: str, inputs: TrainInputs, out_dir: Path,
           live_dir: str | Path | None, resume: Resume, ctx: DistContext) -> dict[str, float]:
    run = _build(config, variant, inputs, ctx)
    last = out_dir / "last.pt"
    start_epoch, global_step, metrics = _try_resume(run, last, resume)
    model: torch.nn.Module = run.trainable
    if ctx.distributed:
        model = DistributedDataParallel(run.trainable,
                                        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    live = LiveLog(live_dir if ctx.is_main else None, resume_step=global_step if start_epoch else None)
    if ctx.is_main:
        log.info("%s: %d training pairs, %d steps/epoch x %d epochs, %d process(es) on %s",
                 variant, len(run.dataset), run.steps_per_epoch, config.epochs, ctx.world_size, ctx.device)
    started = time.monotonic()
    try:
        for epoch in range(start_epoch, config.epochs):
            global_step, epoch_terms = _run_epoch(run, model, epoch, global_step, live)
            epoch_terms = all_reduce_mean(epoch_terms, ctx)  # identical losses; grad norms too
            if ctx.is_main:
                metrics = {f"epoch/{k}": v for k, v in epoch_terms.items()}
                metrics.update({f"epoch/{k}": v for k, v in _monitor(run).items()})
                metrics["epoch/number"] = epoch + 1
                live.log(global_step, metrics)
                log.info("%s epoch %d/%d: %s", variant, epoch + 1, config.epochs,
                         ", ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in metrics.items()))
                if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                    ckpt.save(_state(run, epoch + 1, global_step, metrics, "resume"), last)
            barrier(ctx)
        if ctx.is_main:
            summary = {**metrics, "train/steps": global_step}
            final = _state(run, config.epochs, global_step, summary, "resume")
            ckpt.save(final, out_dir / "checkpoint.pt")
            ckpt.save(_state(run, config.epochs, global_step, summary, "model"), out_dir / "model.pt")
            live.summary({"train/steps": global_step, "train/seconds": time.monotonic() - started})
            last.unlink(missing_ok=True)
            metrics = summary
        barrier(ctx)
    finally:
        live.close()
    return metrics if ctx.is_main else {}
