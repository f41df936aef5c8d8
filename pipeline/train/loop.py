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
from pipeline.losses import LossConfig
from pipeline.model import MacVR, ModelConfig
from pipeline.text import TextConfig
from pipeline.train import checkpoint as ckpt
from pipeline.train.config import TrainConfig
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
    """Input paths. ``cached``: features (+ backbone for the temporal init or the backbone's
    logit scale). ``finetune``: frames, captions, backbone, and tags when the variant uses them."""

    features: Path | None = None
    frames: Path | None = None
    captions: Path | None = None
    tags: Path | None = None
    backbone: Path | None = None

    def needs_backbone(self, config: TrainConfig) -> bool:
        return (config.mode == "finetune" or config.init_temporal_from_backbone
                or config.logit_scale == "backbone")

    def check(self, config: TrainConfig, variant: str) -> None:
        need = {"cached": ["features"], "finetune": ["frames", "captions"]}[config.mode]
        if config.mode == "finetune" and config.uses_tags:
            need.append("tags")
        if self.needs_backbone(config):
            need.append("backbone")
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"train mode {config.mode!r} (variant {variant}) needs "
                             + ", ".join(f"--{m}" for m in missing))

    def used(self, config: TrainConfig) -> list[Path]:
        """The inputs this run reads (for the resume fingerprint)."""
        backbone = [self.backbone] if self.needs_backbone(config) else []
        if config.mode == "cached":
            paths = [self.features] + backbone
        else:
            paths = [self.frames, self.captions] + backbone + ([self.tags] if config.uses_tags else [])
        return [p for p in paths if p is not None]


@dataclass
class _Run:
    """Everything one run builds before its first step."""

    ctx: DistContext
    config: TrainConfig
    text: TextConfig
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
    padding: str
    features_meta: dict[str, Any]


def _build_data(config: TrainConfig, text: TextConfig, inputs: TrainInputs, backbone: Any):
    """(pairs, dataset, embed_dim, frame slots, padding, features meta)."""
    if config.mode == "cached":
        pairs = cached_pairs(inputs.features)
        dataset = CachedFeatureSet(inputs.features, pairs, config.seed)
        meta = dataset.meta
        if meta.get("max_words", text.max_words) != text.max_words:
            raise ValueError(f"{inputs.features} was encoded with max_words {meta['max_words']} but text.max_words is "
                             f"{text.max_words}: re-run the features stage")
        return pairs, dataset, dataset.embed_dim, dataset.num_frames, str(meta.get("padding", "zero")), meta
    from pipeline.frames.store import FrameStore

    store = FrameStore(inputs.frames)
    pairs, texts = finetune_pairs(inputs.frames, inputs.captions)
    m = config.model
    visual = tag_lists(inputs.tags, pairs.video_ids, "visual") if m.use_visual_tags else None
    textual = tag_lists(inputs.tags, list(pairs.caption_ids), "textual") if m.use_textual_tags else None
    dataset = FrameTextSet(inputs.frames, pairs, texts, visual, textual, backbone.text_tokenizer(),
                           text.max_words, config.tags_per_item, config.seed, config.augment)
    return pairs, dataset, backbone.embed_dim, store.num_frames, store.padding, {}


def _check_same_backbone(backbone: Path, meta: dict[str, Any], features: Path) -> None:
    """The temporal init / logit scale must come from the backbone that encoded the cached features."""
    from pipeline.backbone.io import file_sha256

    want = meta.get("backbone_sha256")
    if want is not None and file_sha256(backbone) != want:
        raise ValueError(f"{backbone} is not the backbone that encoded {features} (its meta.json names "
                         f"backbone sha256 {want}); pass the same --backbone the features stage used")


def _build(config: TrainConfig, text: TextConfig, variant: str, inputs: TrainInputs, ctx: DistContext) -> _Run:
    from pipeline.train.checkpoint import inputs_fingerprint

    backbone = None
    if inputs.needs_backbone(config):
        from pipeline.backbone.io import load_backbone

        backbone = load_backbone(inputs.backbone, "cpu")
    pairs, dataset, embed_dim, frames, padding, meta = _build_data(config, text, inputs, backbone)
    if config.mode == "cached" and backbone is not None:
        _check_same_backbone(inputs.backbone, meta, inputs.features)
    model_config = ModelConfig.resolve(config.model, embed_dim=embed_dim, max_frames=frames)
    torch.manual_seed(config.seed)  # the same initial head on every rank, whatever was loaded before
    head = MacVR(model_config)
    if config.init_temporal_from_backbone:
        head.init_from_backbone(backbone)
    if config.logit_scale == "backbone":
        if backbone.logit_scale is None:
            raise ValueError("train.logit_scale is 'backbone' but this backbone has no logit_scale")
        with torch.no_grad():
            head.logit_scale.fill_(float(backbone.logit_scale))
        if config.mode == "cached":  # no backbone is trained: lambda stays the backbone's (TrainConfig)
            head.logit_scale.requires_grad_(False)
    trained_backbone = backbone.train() if config.mode == "finetune" else None
    loss = LossConfig(**to_dict(config.loss), max_words=text.max_words)
    trainable = Trainable(head, trained_backbone, loss, config.logit_scale, padding, text.max_words).to(ctx.device)
    loader, sampler = make_loader(dataset, config.batch_size, ctx, config.seed, config.num_workers)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(trainable, config.lr, config.clip_lr, config.weight_decay,
                                tuple(config.adam_betas), config.adam_eps, config.optimizer, config.decay_rule)
    schedule_epochs = config.schedule_epochs or config.epochs
    scheduler = build_scheduler(optimizer, schedule_epochs * steps_per_epoch, config.warmup_fraction, config.schedule)
    monitor = pairs.first_caption_per_video(config.monitor_videos) if config.monitor_videos else None
    if monitor is not None and len(monitor) < 2:
        monitor = None
    return _Run(ctx=ctx, config=config, text=text, variant=variant, trainable=trainable, dataset=dataset,
                loader=loader, sampler=sampler, optimizer=optimizer, scheduler=scheduler, monitor_indices=monitor,
                fingerprint=inputs_fingerprint(inputs.used(config)), steps_per_epoch=steps_per_epoch,
                padding=padding, features_meta=meta)


def _run_record(run: _Run) -> dict[str, Any]:
    """How the run was made (stored in checkpoints; compared to resume)."""
    # A variant without tags records no tag setting: its files must not change with them (DVC
    # does not re-run it after a tag-only change: pipeline/train/inputs.py).
    keys = ("backbone_sha256", "max_words") + (("infer_tags", "tag_control") if run.config.uses_tags else ())
    features = {k: run.features_meta[k] for k in keys if k in run.features_meta}
    return {"train": to_dict(run.config), "text": to_dict(run.text), "padding": run.padding, "features": features}


def _state(run: _Run, epoch: int, global_step: int, metrics: dict[str, float], kind: str,
           final: bool = False) -> dict[str, Any]:
    """A checkpoint's content. ``final`` (``checkpoint.pt``, ``model.pt``: DVC outputs) leaves out
    the resume fingerprint, which hashes input files' modification times: identical inputs then
    give byte-identical files in any clone (only ``last.pt``, never a DVC output, is resumed)."""
    from pipeline.backbone.io import payload as backbone_payload

    t = run.trainable
    data: dict[str, Any] = {
        "kind": kind, "variant": run.variant, "model_config": to_dict(t.head.config), "run": _run_record(run),
        "epoch": epoch, "global_step": global_step, "world_size": run.ctx.world_size,
        "fingerprint": None if final else run.fingerprint, "model": ckpt.cpu_state_dict(t.head),
        "backbone": backbone_payload(t.backbone) if t.backbone is not None else None,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if kind == "resume":
        data.update(optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                    rng=ckpt.rng_state(run.ctx.device))
    return data


def _resume_problem(payload: dict[str, Any], run: _Run) -> str | None:
    """Why ``payload`` cannot continue ``run`` (None when it can)."""
    if payload.get("kind") != "resume":
        return "it is not a resumable checkpoint"
    if (payload.get("run") != _run_record(run) or payload.get("model_config") != to_dict(run.trainable.head.config)
            or payload["variant"] != run.variant):
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
    if run.trainable.backbone is not None:
        run.trainable.backbone.inner.load_state_dict(payload["backbone"]["state_dict"])
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
            step_metrics["train/logit_scale"] = float(run.trainable.logit_scale.detach().exp())
            if ctx.is_main:
                live.log(global_step, step_metrics)
            window = {}
    bar.close()
    return global_step, {k: v / run.steps_per_epoch for k, v in totals.items()}


def train(config: TrainConfig, variant: str, inputs: TrainInputs, out_dir: str | Path,
          live_dir: str | Path | None = None, resume: Resume = "auto",
          text: TextConfig | None = None) -> dict[str, float]:
    """Train ``variant`` (its resolved ``config``: see :mod:`pipeline.train.variants`); write
    checkpoints to ``out_dir``; return final metrics. ``text``: the text length (default 32)."""
    text = text or TextConfig(max_words=32)
    inputs.check(config, variant)
    out_dir = Path(out_dir)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    ctx = init_distributed(config.device)
    try:
        return _train(config, text, variant, inputs, out_dir, live_dir, resume, ctx)
    finally:
        shutdown(ctx)


def _train(config: TrainConfig, text: TextConfig, variant: str, inputs: TrainInputs, out_dir: Path,
           live_dir: str | Path | None, resume: Resume, ctx: DistContext) -> dict[str, float]:
    run = _build(config, text, variant, inputs, ctx)
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
            final = _state(run, config.epochs, global_step, summary, "resume", final=True)
            ckpt.save(final, out_dir / "checkpoint.pt")
            ckpt.save(_state(run, config.epochs, global_step, summary, "model", final=True), out_dir / "model.pt")
            live.summary({"train/steps": global_step})
            log.info("%s: %d steps in %.1f s", variant, global_step, time.monotonic() - started)
            last.unlink(missing_ok=True)
            metrics = summary
        barrier(ctx)
    finally:
        live.close()
    return metrics if ctx.is_main else {}
