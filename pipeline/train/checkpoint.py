"""Checkpoint files of the train stage, and loading a trained model back.

Every file is a plain dict of tensors / dicts / lists / str / int / float / bool / None, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled code). Kinds:

- ``last.pt`` (resumable, rewritten every ``checkpoint_every`` epochs while training) and
  ``checkpoint.pt`` (the same content at the end of training)::

      {"format": "macvr-train", "version": 1, "kind": "resume",
       "variant": "macvr", "config": {resolved TrainConfig as a plain dict},
       "epoch": completed epochs, "global_step": optimiser steps so far,
       "world_size": processes, "fingerprint": inputs fingerprint (see below),
       "model": head state dict, "clip": {"arch": {...}, "state_dict": {...}} | None,
       "optimizer": ..., "scheduler": ..., "rng": {"torch": uint8 tensor, "cuda": [...]},
       "metrics": {name: float}}

- ``model.pt`` (for evaluate / search): the same without optimiser, scheduler and RNG state,
  ``"kind": "model"``.

The fingerprint is a hash of (relative path, size, mtime) of every input file. A ``last.pt``
is only resumed automatically when its config, process count and fingerprint all match:
touched inputs start a fresh run rather than silently continue from stale weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import from_mapping
from pipeline.io import atomic_path
from pipeline.model import MacVR
from pipeline.train.config import TrainConfig

FORMAT = "macvr-train"
VERSION = 1
KINDS = ("resume", "model")


class CheckpointError(ValueError):
    """A checkpoint file is missing, foreign, or does not fit the requested use."""


def inputs_fingerprint(paths: list[str | Path | None]) -> str:
    """SHA256 over (path, size, mtime_ns) of every file under ``paths`` (None entries skipped)."""
    digest = hashlib.sha256()
    for root in sorted(str(p) for p in paths if p is not None):
        root_path = Path(root)
        if not root_path.exists():
            raise FileNotFoundError(f"{root_path}: training input not found")
        files = [root_path] if root_path.is_file() else sorted(p for p in root_path.rglob("*") if p.is_file())
        for f in files:
            st = f.stat()
            digest.update(f"{os.path.relpath(f, root_path.parent)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch RNG states that dropout and DataLoader seeding consume."""
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state(state["cuda"][0], device)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def clip_payload(clip_model: nn.Module | None) -> dict[str, Any] | None:
    """CLIP's architecture + weights (finetune mode), rebuildable by :func:`load_trained_clip`."""
    if clip_model is None:
        return None
    from pipeline.backbone.arch import ClipArch

    return {"arch": ClipArch.of(clip_model).to_dict(), "state_dict": cpu_state_dict(clip_model)}


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically (a crash leaves the previous file intact)."""
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {payload.get('kind')!r}")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (did the train stage run?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a macvr train checkpoint (format {FORMAT!r} expected)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}, this code reads {VERSION}")
    return payload


def config_of(payload: dict[str, Any], where: str) -> TrainConfig:
    """The TrainConfig stored in a checkpoint (validated like params.yaml)."""
    return from_mapping(TrainConfig, payload["config"], where=f"{where}: config")


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[MacVR, TrainConfig]:
    """The trained head (eval mode, on ``device``) and its resolved config.

    Accepts ``model.pt`` or a resumable checkpoint. In finetune mode the features the head
    expects come from the fine-tuned CLIP: see :func:`load_trained_clip`.
    """
    payload = load(path)
    config = config_of(payload, str(path))
    model = MacVR(config.model)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {err}") from err
    return model.to(device).eval(), config


def load_trained_clip(path: str | Path, device: str | torch.device = "cpu") -> nn.Module | None:
    """The fine-tuned CLIP of a finetune-mode checkpoint (float32, eval mode); None in cached mode."""
    payload = load(path)
    if payload.get("clip") is None:
        return None
    from pipeline.backbone.arch import ClipArch

    arch = ClipArch.from_dict(payload["clip"]["arch"], where=f"{path}: clip.arch")
    clip_model = arch.build()
    clip_model.load_state_dict(payload["clip"]["state_dict"], strict=True)
    return clip_model.float().to(device).eval()
