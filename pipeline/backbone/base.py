"""The backbone interface: everything the rest of the pipeline may ask of a CLIP-like model.

Features, fine-tuning, evaluation, search and the head's temporal initialisation use a
:class:`Backbone` and nothing else: which library implements it (clip-anytorch, open_clip, a
tiny CLIP trained here) is decided once, by ``backbone.kind``, through :data:`FAMILIES`.

A backbone encodes

- frames: uint8 RGB ``[B, H, W, 3]`` -> resized/cropped to its input size, normalised with its
  own statistics -> projected image embedding ``[B, D]`` (not L2-normalised);
- texts: token ids + word mask from its own tokenizer, cut to ``max_words`` tokens (start and end
  tokens included, as the official MAC-VR loader does) -> projected text embedding ``[B, D]``.

Adding a backbone family: one module defining a :class:`BackboneFamily` subclass decorated with
``@register_family`` (and, usually, a :class:`Backbone` subclass), plus one import line in
``pipeline/backbone/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.registry import Registry

# CLIP's training statistics (clip.clip._transform), RGB order.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Parameter names of one transformer block in CLIP's layout, which the head's temporal
#: transformer shares so that the official initialisation is an exact state-dict copy.
BLOCK_KEYS = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
              "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
              "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias")


class BackboneError(RuntimeError):
    """The requested backbone weights are missing, corrupt, or of the wrong architecture."""


@dataclass(frozen=True)
class TextBatch:
    """Tokenised texts: ``ids`` long ``[B, L]``, ``mask`` bool ``[B, L]`` (True = a real token),
    ``truncated`` bool ``[B]`` (the text was longer than ``max_words`` tokens)."""

    ids: torch.Tensor
    mask: torch.Tensor
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def rows(self, index: Any) -> "TextBatch":
        return TextBatch(self.ids[index], self.mask[index], np.asarray(self.truncated)[index])


def resize_centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, size, size]``: bicubic resize of the shorter side
    (antialiased, like PIL), centre crop, clamp back into [0, 1]. A no-op at the right size."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    x = F.interpolate(x, size=new, mode="bicubic", align_corners=False, antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return x[..., top: top + size, left: left + size].clamp_(0.0, 1.0)


class Backbone(nn.Module, ABC):
    """A CLIP-like dual encoder, whatever library implements it (see the module docstring)."""

    kind: ClassVar[str]  # the family that builds it (``backbone.kind``)

    # ------------------------------------------------------------------ facts
    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """D, the width of both projected embeddings."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the square input image."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Longest token sequence the text tower takes (``max_words`` may not exceed it)."""

    @property
    def mean(self) -> tuple[float, float, float]:
        return CLIP_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        return CLIP_STD

    @property
    def logit_scale(self) -> nn.Parameter | None:
        """The model's own learned log temperature (the official MAC-VR lambda), if it has one."""
        return None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ text
    @abstractmethod
    def tokenize(self, texts: Sequence[str], max_words: int) -> TextBatch:
        """Token ids and word mask, each text cut to ``max_words`` tokens including start/end."""

    def text_tokenizer(self):
        """A picklable ``(texts, max_words) -> TextBatch`` equal to :meth:`tokenize`, for data
        loader workers (the default pickles the whole backbone: override it)."""
        return self.tokenize

    @abstractmethod
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Projected text embeddings ``[B, D]`` (float32, not normalised) of tokenised texts."""

    def encode_texts(self, texts: Sequence[str], max_words: int) -> torch.Tensor:
        batch = self.tokenize(texts, max_words)
        return self.encode_text(batch.ids.to(self.device), batch.mask.to(self.device))

    # ------------------------------------------------------------------ frames
    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``[B, H, W, 3]`` -> normalised float ``[B, 3, R, R]`` on this backbone's device."""
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
        x = x.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = resize_centre_crop(x, self.image_size)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @abstractmethod
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings ``[B, D]`` (float32) of normalised pixels ``[B, 3, R, R]``."""

    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Projected image embeddings ``[B, D]`` (float32) of uint8 frames ``[B, H, W, 3]``."""
        return self.encode_pixels(self.preprocess(frames))

    def blank_frame_embedding(self) -> torch.Tensor:
        """``[D]``: the embedding of an all-zero *normalised* image, which is what the official
        loader puts in the padded frame slots of a short video."""
        zeros = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        return self.encode_pixels(zeros)[0]

    # ------------------------------------------------------------------ temporal init
    def text_block_states(self, layers: int) -> list[dict[str, torch.Tensor]]:
        """The first ``layers`` text-transformer blocks as state dicts with :data:`BLOCK_KEYS`
        (the official trick initialises the temporal transformer from them). ValueError when
        this backbone has no such blocks."""
        raise ValueError(f"a {self.kind} backbone has no CLIP-layout text blocks to initialise from")

    def text_positions(self, count: int) -> torch.Tensor:
        """The first ``count`` rows of the text position embedding ``[count, width]``."""
        raise ValueError(f"a {self.kind} backbone has no text position embedding to initialise from")

    @property
    def text_width(self) -> int:
        """Width of the text transformer (the temporal init needs it equal to D)."""
        raise ValueError(f"a {self.kind} backbone does not expose its text width")

    @property
    def text_heads(self) -> int:
        raise ValueError(f"a {self.kind} backbone does not expose its text heads")

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def arch(self) -> dict[str, Any]:
        """What rebuilds this model's structure (plain JSON-able values)."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The state dict that :meth:`BackboneFamily.rebuild` loads back (float32, on the CPU)."""
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.inner.state_dict().items()}

    @property
    def inner(self) -> nn.Module:
        """The wrapped library model (the module whose state dict is saved)."""
        return self


@dataclass(frozen=True)
class BuildInputs:
    """What the backbone stage hands a family: the decoded frames (tiny pretraining) and the
    captions, and the text length every text is cut to; ``tags`` (``tags.parquet``) for the tiny
    backbone's tag terms. ``pretrain_options`` (a
    :class:`~pipeline.backbone.pretrain_options.PretrainOptions`) serves the tiny backbone's
    fresh-clip options; the stage does not pass it (library callers do)."""

    frames_dir: Path | None
    captions: Path | None
    max_words: int
    pretrain_options: Any = None
    tags: Path | None = None


class BackboneFamily(ABC):
    """How one kind of backbone is obtained (backbone stage) and rebuilt (weights files)."""

    kind: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def build(self, cfg: Any, inputs: BuildInputs, progress: bool = True
              ) -> tuple[Backbone, dict[str, Any], dict[str, Any]]:
        """The backbone for ``cfg`` (``params.yaml: backbone``), its provenance (weights file
        ``source``) and the stage metrics to record."""

    @abstractmethod
    def rebuild(self, arch: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Backbone:
        """A float32 backbone (eval mode, CPU) from a weights file's ``arch`` and state dict."""

    def expected_image_size(self, cfg: Any) -> int | None:
        """The input size ``cfg`` implies without loading weights (None: only known once loaded)."""
        return None

    def expected_context_length(self, cfg: Any) -> int | None:
        return None


FAMILIES: Registry[BackboneFamily] = Registry("backbone kind", "pipeline/backbone/")


def register_family(cls: type[BackboneFamily]) -> type[BackboneFamily]:
    """Class decorator: register one instance of ``cls`` under ``cls.kind``."""
    FAMILIES.register(cls.kind, cls())
    return cls
