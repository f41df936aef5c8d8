"""Backbone kind ``clip``: OpenAI's CLIP weights (ViT-B/32 by default) through clip-anytorch.

The weights file is found locally (``backbone.path``, else clip's cache), or downloaded by
clip (needs the network); its SHA-256 is checked against the checksum clip-anytorch publishes
for the model (or a given one), and the architecture that ``clip.model.build_model`` infers
from the state dict is checked against the model's known shape.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from pipeline.backbone.arch import KNOWN_ARCHS, VIT_B_32, ClipArch, clip_module
from pipeline.backbone.base import Backbone, BackboneError, BackboneFamily, BuildInputs, register_family
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.io import file_sha256

log = logging.getLogger(__name__)

MODEL_NAME = "ViT-B/32"


def _url(name: str) -> str:
    models = clip_module().clip._MODELS
    if name not in models:
        raise BackboneError(f"backbone.model: {name!r} is not an OpenAI CLIP model clip-anytorch knows "
                            f"({', '.join(models)}); use backbone.kind: open_clip for other models")
    return models[name]


def official_sha256(name: str = MODEL_NAME) -> str:
    """The checksum clip-anytorch embeds in its download URL for ``name``."""
    url = _url(name)
    return url.rstrip("/").split("/")[-2]


def default_cache_path(name: str = MODEL_NAME) -> Path:
    """Where ``clip.load(name)`` caches the archive: ``~/.cache/clip/<file>``."""
    url = _url(name)
    return Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)


def resolve_path(path: Optional[str], name: str = MODEL_NAME) -> Path:
    """The weights file to use: ``path``, else clip's cache, else a download (network)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BackboneError(f"backbone.path: {p} does not exist or is not a file")
        return p
    cached = default_cache_path(name)
    if cached.is_file():
        log.info("using clip's cached %s weights at %s", name, cached)
        return cached
    log.info("no local %s weights; downloading with clip.load (needs the network)", name)
    clip = clip_module()
    try:
        # _download verifies the official SHA256 itself and leaves the file in the cache.
        return Path(clip.clip._download(_url(name), str(cached.parent)))
    except Exception as err:
        raise BackboneError(
            f"{name} weights are not at {cached} and downloading them failed ({err}). "
            f"Copy OpenAI's {cached.name} there or set backbone.path to a local file."
        ) from err


def expected_sha256(setting: Optional[str], name: str = MODEL_NAME) -> Optional[str]:
    """Resolve the ``sha256`` param: ``official`` -> clip's checksum, hex -> itself, null -> none."""
    if setting == "official":
        return official_sha256(name)
    return setting


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside an OpenAI JIT archive, a plain state dict, a macvr weights file, or the
    ``clip.*`` part of a released MAC-VR / DiCoSA checkpoint."""
    try:
        with warnings.catch_warnings():  # torch 2.9+ flags torch.jit.load as deprecated
            warnings.simplefilter("ignore", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        pass  # not TorchScript: clip.load falls back to torch.load the same way
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneError(f"{path}: neither a TorchScript archive nor a state dict ({err})") from err
    if isinstance(obj, dict) and obj.get("format") == "macvr-clip":
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: does not hold a CLIP state dict (a mapping of tensors)")
    return clip_part(dict(obj), path)


def clip_part(state: dict[str, torch.Tensor], path: Path | str) -> dict[str, torch.Tensor]:
    """The CLIP of a MAC-VR / DiCoSA checkpoint (its ``clip.*`` keys, DDP's ``module.`` prefix
    allowed), or ``state`` itself when it is a plain CLIP state dict."""
    prefixes = ("clip.", "module.clip.")
    inner = {k.split("clip.", 1)[1]: v for k, v in state.items() if k.startswith(prefixes)}
    if not inner:
        return state
    log.info("%s: a MAC-VR / DiCoSA checkpoint: using its fine-tuned CLIP (%d clip.* tensors; %d head tensors "
             "ignored here)", path, len(inner), len(state) - len(inner))
    return {k: v.float() if v.is_floating_point() else v for k, v in inner.items()}


def load_official(path: Optional[str], sha256: Optional[str], expected: ClipArch | None = VIT_B_32,
                  name: str = MODEL_NAME) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load official CLIP weights as a float32 CPU model, verifying checksum and architecture.

    Mirrors ``clip.load(path, device="cpu", jit=False)``: ``build_model`` infers the widths
    from the state dict (and converts to fp16), then ``.float()``. Returns the model and a
    provenance dict (file, sha256) for the weights file's ``source``.
    """
    file = resolve_path(path, name)
    want = expected_sha256(sha256, name)
    got = file_sha256(file)
    if want is None:
        log.warning("backbone.sha256 is null: not verifying %s (sha256 %s)", file, got)
    elif got != want:
        raise BackboneError(f"{file}: SHA256 mismatch: file has {got}, expected {want} "
                            f"(backbone.sha256: {sha256}); the file is corrupt or not {name}")
    state = _state_dict_from_file(file)
    clip = clip_module()
    try:
        model = clip.model.build_model(state)
    except (KeyError, RuntimeError, AssertionError, ValueError, ZeroDivisionError) as err:
        raise BackboneError(f"{file}: not a ViT CLIP state dict clip can build ({err!r})") from err
    model = model.float().eval()
    arch = ClipArch.of(model)
    wrong = arch.mismatches(expected) if expected is not None else []
    if wrong:
        raise BackboneError(f"{file}: wrong architecture for {name}: " + "; ".join(wrong))
    return model, {"kind": "clip", "name": name, "file": str(file), "file_sha256": got,
                   "verified_sha256": want is not None}


@register_family
class OpenAIClip(BackboneFamily):
    """``kind: clip``: OpenAI CLIP weights (``backbone.model``, e.g. ViT-B/32) via clip-anytorch."""

    kind = "clip"
    description = "OpenAI CLIP through clip-anytorch (backbone.model: ViT-B/32, ViT-B/16, ViT-L/14, ...)"

    def build(self, cfg: Any, inputs: BuildInputs, progress: bool = True
              ) -> tuple[Backbone, dict[str, Any], dict[str, Any]]:
        model, source = load_official(cfg.path, cfg.sha256, KNOWN_ARCHS.get(cfg.model), cfg.model)
        return ClipModel(model, self.kind), source, {}

    def rebuild(self, arch: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Backbone:
        return ClipModel.from_arch(arch, state_dict, self.kind)

    def expected_image_size(self, cfg: Any) -> int | None:
        known = KNOWN_ARCHS.get(cfg.model)
        return None if known is None else known.image_resolution

    def expected_context_length(self, cfg: Any) -> int | None:
        known = KNOWN_ARCHS.get(cfg.model)
        return None if known is None else known.context_length
