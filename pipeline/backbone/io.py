"""The backbone weights file: a state dict plus what rebuilds it, safe to ``torch.load``.

Format (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "macvr-backbone", "version": 2,
     "kind": "tiny" | "clip" | "open_clip" | ...,   # the family that rebuilds it (pipeline.backbone.FAMILIES)
     "arch": {...},                                 # the family's structure description
     "source": {"kind": ..., ...},                  # provenance (str/int/float/None values only)
     "state_dict": {name: float32 tensor}}

Version 1 files (``"format": "macvr-clip"``, clip-anytorch models only) still load. The same
``{"kind", "arch", "state_dict"}`` payload is what finetune-mode checkpoints store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from pipeline.io import atomic_path

FORMAT = "macvr-backbone"
VERSION = 2
LEGACY_FORMAT = "macvr-clip"  # version 1: clip-anytorch ClipArch + state dict


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA256 hex digest of a file, streamed (weights files are hundreds of MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def payload(backbone: Any) -> dict[str, Any]:
    """``{"kind", "arch", "state_dict"}`` of a :class:`~pipeline.backbone.base.Backbone`."""
    return {"kind": backbone.kind, "arch": backbone.arch(), "state_dict": backbone.weights()}


def from_payload(data: dict[str, Any], where: str = "backbone") -> Any:
    """Rebuild a backbone (float32, eval mode, CPU) from :func:`payload`'s dict."""
    from pipeline.backbone import FAMILIES
    from pipeline.registry import RegistryError

    try:
        family = FAMILIES.get(str(data["kind"]))
    except RegistryError as err:
        raise ValueError(f"{where}: {err}") from None
    return family.rebuild(data["arch"], data["state_dict"]).float().eval()


def save_weights(backbone: Any, path: str | Path, source: dict[str, Any]) -> None:
    """Write ``backbone`` as a float32 weights file, atomically (same weights -> same bytes)."""
    data = {"format": FORMAT, "version": VERSION, **payload(backbone), "source": dict(source)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not the path: torch names the archive's root folder after the file,
        # and the temporary name is random, which would make identical weights differ by bytes.
        torch.save(data, f)


def read_weights(path: str | Path) -> dict[str, Any]:
    """A weights file as ``{"kind", "arch", "state_dict", "source"}``; clear errors for foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights not found (run the backbone stage)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign/corrupt files
        raise ValueError(f"{path}: not a readable backbone weights file ({err})") from err
    if isinstance(data, dict) and data.get("format") == LEGACY_FORMAT and data.get("version") == 1:
        kind = "tiny" if data.get("source", {}).get("kind") == "tiny" else "clip"
        return {"kind": kind, "arch": data["arch"], "state_dict": data["state_dict"], "source": data["source"]}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a macvr backbone weights file (expected format '{FORMAT}'; "
                         f"official CLIP files go through the backbone stage, kind: clip)")
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: weights format version {data.get('version')!r}, this code reads version {VERSION}")
    return {k: data[k] for k in ("kind", "arch", "state_dict", "source")}


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a weights file as a float32 :class:`~pipeline.backbone.base.Backbone` in eval mode."""
    data = read_weights(path)
    return from_payload(data, where=str(path)).to(device).eval()
