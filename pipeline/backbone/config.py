"""Typed configuration of the ``backbone`` stage (``params.yaml: backbone``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from pipeline.backbone.tiny import TinyClipConfig

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone the pipeline uses.

    kind: a registered backbone family (``pipeline.backbone.FAMILIES``): ``tiny`` (pretrained
        here on the train split), ``clip`` (OpenAI CLIP via clip-anytorch), ``open_clip`` (any
        open_clip model).
    model: the model name for ``clip`` (``ViT-B/32``, ``ViT-B/16``, ``ViT-L/14``) or ``open_clip``
        (``ViT-B-32-quickgelu``, ``ViT-B-16``, ``ViT-L-14``, ``ViT-B-16-SigLIP``, ...); unused by ``tiny``.
    path: local weights file; ``clip`` falls back to clip's cache ``~/.cache/clip`` then clip's
        download; ``open_clip`` requires it. ``clip`` also reads the fine-tuned CLIP inside a
        released MAC-VR / DiCoSA checkpoint (its ``clip.*`` weights; set ``sha256: null``).
    sha256: ``official`` checks the file against the checksum clip-anytorch publishes for
        ``model`` (``clip`` only); a 64-hex string checks that value; ``null`` skips the check
        (the architecture is always verified).
    torch_threads: intra-op CPU threads while building (``torch.set_num_threads``; 0 = PyTorch's
        default). The tiny CLIP's small matrices run best on 1 thread of a shared 2-core box.
    tiny: the tiny CLIP's architecture and pretraining recipe.
    """

    kind: str
    model: str
    path: Optional[str]
    sha256: Optional[str]
    torch_threads: int
    tiny: TinyClipConfig

    def __post_init__(self) -> None:
        from pipeline.backbone.base import FAMILIES

        FAMILIES.get(self.kind)  # RegistryError naming the registered kinds
        if self.sha256 is not None and self.sha256 != "official" and not _HEX64.match(self.sha256):
            raise ValueError(f"sha256 must be 'official', null or 64 lowercase hex digits, got {self.sha256!r}")
        if self.path is not None and not self.path.strip():
            raise ValueError("path must be null or a non-empty file path")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0 (0 = PyTorch's default), got {self.torch_threads}")
        if not self.model.strip():
            raise ValueError("model must name a model (e.g. ViT-B/32)")

    @property
    def family(self):
        from pipeline.backbone.base import FAMILIES

        return FAMILIES.get(self.kind)
