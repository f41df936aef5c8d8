"""The backbone weights file: a CLIP state dict plus its architecture, safe to ``torch.load``.

Format (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "macvr-clip", "version": 1,
     "arch": {ClipArch fields},            # enough to rebuild clip.model.CLIP
     "source": {"kind": ..., ...},         # provenance (str/int/float/None values only)
     "state_dict": {name: float32 tensor}}
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from pipeline.backbone.arch import ClipArch
from pipeline.io import atomic_path

FORMAT = "macvr-clip"
VERSION = 1


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA256 hex digest of a file, streamed (weights files are hundreds of MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: torch.nn.Module, path: str | Path, source: dict[str, Any]) -> None:
    """Write ``model`` (a ``clip.model.CLIP``) as a float32 weights file, atomically."""
    arch = ClipArch.of(model)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "arch": arch.to_dict(),
               "source": dict(source), "state_dict": state}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not the path: torch names the archive's root folder after the file,
        # and the temporary name is random, which would make identical weights differ by bytes.
        torch.save(payload, f)


def read_weights(path: str | Path) -> tuple[ClipArch, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file: ``(arch, state_dict, source)``; clear errors for foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights not found (run the backbone stage)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign/corrupt files
        raise ValueError(f"{path}: not a readable backbone weights file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a macvr backbone weights file (expected format '{FORMAT}'; "
                         f"official CLIP files go through the backbone stage, kind: vit-b-32)")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: weights format version {payload.get('version')!r}, "
                         f"this code reads version {VERSION}")
    arch = ClipArch.from_dict(payload["arch"], where=f"{path}: arch")
    return arch, payload["state_dict"], payload["source"]


def load_clip(weights_path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a backbone weights file as a float32 ``clip.model.CLIP`` in eval mode on ``device``."""
    arch, state, _ = read_weights(weights_path)
    model = arch.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path}: state dict does not match its architecture: {err}") from err
    return model.float().to(device).eval()
