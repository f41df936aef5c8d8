"""Checkpoint files of the train stage: writing them, and reading them back.

Every file is a plain dict of tensors / dicts / lists / str / int / float / bool / None, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled code). Kinds:

- ``last.pt`` (resumable, rewritten every ``checkpoint_every`` epochs while training) and
  ``checkpoint.pt`` (the same content at the end of training)::

      {"format": "macvr-train", "version": 2, "kind": "resume", "variant": "macvr",
       "model_config": {resolved ModelConfig: everything that shapes the head's weights},
       "run": {"train": {resolved TrainConfig}, "text": {"max_words": ...},
               "padding": "zero" | "blank", "features": {...}},      # how the run was made
       "epoch": completed epochs, "global_step": optimiser steps so far,
       "world_size": processes, "fingerprint": inputs fingerprint (see below),
       "model": head state dict, "backbone": {"kind", "arch", "state_dict"} | None,
       "optimizer": ..., "scheduler": ..., "rng": {"torch": uint8 tensor, "cuda": [...]},
       "metrics": {name: float}}

- ``model.pt`` (for evaluate / report / search): the same without optimiser, scheduler and RNG
  state, ``"kind": "model"``.

Compatibility: reading is lenient where it is safe. ``model_config`` is read with
:func:`pipeline.config.from_stored`: a key added to the code later takes its documented legacy
value or its default, an unknown key is dropped; only a weight-shaping key the code cannot
supply is refused, by name. Version 1 files (before variants and the backbone interface) are
upgraded on read. The fingerprint is a hash of (relative path, size, mtime) of every input
file: a ``last.pt`` is resumed automatically only when its config, process count and
fingerprint all match. ``checkpoint.pt`` and ``model.pt`` (DVC outputs) store ``None`` instead,
so identical inputs give byte-identical files whatever the files' modification times.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import ConfigError, from_stored
from pipeline.io import atomic_path, load_torch
from pipeline.model import MacVR, ModelConfig

log = logging.getLogger(__name__)

FORMAT = "macvr-train"
VERSION = 2
KINDS = ("resume", "model")
#: ModelConfig keys added after version 1, with the value that reproduces older checkpoints.
MODEL_LEGACY = {"temporal_ln_eps": 1e-5}


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


def save(data: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically (a crash leaves the previous file intact)."""
    if data.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {data.get('kind')!r}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not the path: torch names the archive's root folder after the file, and
        # the temporary name is random, which would make identical checkpoints differ by bytes.
        torch.save({"format": FORMAT, "version": VERSION, **data}, f)


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint in version 2's layout (same weights, same meaning)."""
    config = dict(data["config"])
    model = dict(config.pop("model"))
    tags = [t for t, on in (("visual", model.pop("use_visual_tags", False)),
                            ("textual", model.pop("use_textual_tags", False))) if on]
    model.pop("variant", None)
    model["tags"] = tags
    loss = dict(config.pop("loss"))
    text = {"max_words": loss.pop("max_words", 32)}
    train = {**config, "model": {k: v for k, v in model.items() if k not in ("embed_dim", "max_frames")},
             "loss": loss}
    train["init_temporal_from_backbone"] = train.pop("init_temporal_from_clip", False)
    train.setdefault("logit_scale", "head")
    backbone = None
    if data.get("clip") is not None:
        backbone = {"kind": "clip", "arch": data["clip"]["arch"], "state_dict": data["clip"]["state_dict"]}
    out = {k: v for k, v in data.items() if k not in ("config", "clip")}
    out.update(version=VERSION, model_config=model, backbone=backbone,
               run={"train": train, "text": text, "padding": "zero"})
    return out


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, check its format, upgrade old versions."""
    path = Path(path)
    data = load_torch(path, CheckpointError, "checkpoint not found (did the train stage run?)",
                      "not a readable checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a macvr train checkpoint (format {FORMAT!r} expected)")
    if data.get("version") == 1:
        data = _upgrade_v1(data)
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r}, this code reads <= {VERSION}")
    return data


def model_config_of(data: dict[str, Any], where: str) -> ModelConfig:
    """The head's resolved config from a checkpoint (lenient: see the module docstring)."""
    dropped: list[str] = []
    try:
        config = from_stored(ModelConfig, data["model_config"], f"{where}: model_config", MODEL_LEGACY, dropped)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    if dropped:
        log.info("%s: ignoring stored keys this code does not know: %s", where, ", ".join(dropped))
    return config


def head_from(data: dict[str, Any], where: str, device: str | torch.device = "cpu") -> MacVR:
    """The trained head (eval mode, on ``device``) of a loaded checkpoint."""
    model = MacVR(model_config_of(data, where))
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{where}: weights do not fit the stored model config: {err}") from err
    return model.to(device).eval()


def backbone_from(data: dict[str, Any], where: str, device: str | torch.device = "cpu"):
    """The fine-tuned backbone of a finetune-mode checkpoint (float32, eval); None in cached mode."""
    if data.get("backbone") is None:
        return None
    from pipeline.backbone.io import from_payload

    try:
        return from_payload(data["backbone"], where=f"{where}: backbone").to(device).eval()
    except (ValueError, RuntimeError) as err:
        raise CheckpointError(f"{where}: the stored backbone cannot be rebuilt: {err}") from err
