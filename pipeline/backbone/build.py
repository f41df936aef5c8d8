"""The backbone stage: obtain the backbone of ``backbone.kind`` and write its weights file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pipeline.backbone.base import BuildInputs
from pipeline.backbone.config import BackboneConfig
from pipeline.backbone.io import file_sha256, save_weights

log = logging.getLogger(__name__)


def build_backbone(cfg: BackboneConfig, frames_dir: str | Path | None, captions_path: str | Path | None,
                   out: str | Path, max_words: int, progress: bool = True,
                   pretrain_options: Any = None, tags: str | Path | None = None) -> dict[str, Any]:
    """Write the weights file ``out``; return the stage metrics (no timings: they differ on every
    run of identical inputs, so they go to the log, not to the tracked metrics).

    ``tags`` (``tags.parquet``) serves the tiny backbone's tag terms (``backbone.tiny``:
    ``tag_text_weight``, ``tag_visual_weight``, ``tag_pair_weight``); other kinds ignore it.
    ``pretrain_options`` (:class:`~pipeline.backbone.pretrain_options.PretrainOptions`) is needed
    only by the tiny backbone's fresh-clip options (``fresh_fraction``); the backbone stage does
    not pass it."""
    start = time.perf_counter()
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    inputs = BuildInputs(frames_dir=None if frames_dir is None else Path(frames_dir),
                         captions=None if captions_path is None else Path(captions_path), max_words=max_words,
                         pretrain_options=pretrain_options, tags=None if tags is None else Path(tags))
    backbone, source, extra = cfg.family.build(cfg, inputs, progress=progress)
    save_weights(backbone, out, source)
    metrics: dict[str, Any] = {
        "kind": cfg.kind, **({"model": cfg.model} if cfg.kind != "tiny" else {}), **extra,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "embed_dim": backbone.embed_dim, "image_size": backbone.image_size,
        "weights_sha256": file_sha256(out)}
    log.info("backbone %s written to %s in %.1f s", cfg.kind, out, time.perf_counter() - start)
    return metrics
