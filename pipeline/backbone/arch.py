"""CLIP architecture hyper-parameters: build a model from them, read them off a model."""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

CLIP_VOCAB_SIZE = 49408  # CLIP's byte-level BPE vocabulary (ships inside clip-anytorch)


def clip_module() -> ModuleType:
    """``import clip`` without its ``pkg_resources`` deprecation warning (clip-anytorch 2.6)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        return importlib.import_module("clip")


@dataclass(frozen=True)
class ClipArch:
    """The arguments of ``clip.model.CLIP`` (ViT vision tower only)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    def build(self) -> torch.nn.Module:
        """A freshly initialised float32 ``clip.model.CLIP`` (uses the global torch RNG)."""
        model_cls = clip_module().model.CLIP
        return model_cls(**dataclasses.asdict(self))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "arch") -> "ClipArch":
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(f"{where}: architecture keys {sorted(data)} differ from {sorted(names)}")
        bad = [k for k, v in data.items() if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise ValueError(f"{where}: architecture values must be integers, not for {bad}")
        return cls(**data)

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ClipArch":
        """Read the hyper-parameters off a built ``clip.model.CLIP`` (ViT)."""
        visual = model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise ValueError("only ViT CLIP models are supported (got a ResNet vision tower)")
        return cls(
            embed_dim=int(model.text_projection.shape[1]),
            image_resolution=int(visual.input_resolution),
            vision_layers=len(visual.transformer.resblocks),
            vision_width=int(visual.conv1.out_channels),
            vision_patch_size=int(visual.conv1.kernel_size[0]),
            context_length=int(model.context_length),
            vocab_size=int(model.vocab_size),
            transformer_width=int(model.transformer.width),
            transformer_heads=int(model.transformer.resblocks[0].attn.num_heads),
            transformer_layers=len(model.transformer.resblocks),
        )

    def mismatches(self, expected: "ClipArch") -> list[str]:
        """Human-readable ``name: got X, expected Y`` for every differing field."""
        got, want = self.to_dict(), expected.to_dict()
        return [f"{k}: got {got[k]}, expected {want[k]}" for k in want if got[k] != want[k]]


# OpenAI's ViT-B/32, as clip.model.build_model infers it from the official state dict.
VIT_B_32 = ClipArch(
    embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
    vision_patch_size=32, context_length=77, vocab_size=CLIP_VOCAB_SIZE,
    transformer_width=512, transformer_heads=8, transformer_layers=12,
)

# The other OpenAI ViT models clip-anytorch can load (checked when their weights are loaded).
KNOWN_ARCHS: dict[str, ClipArch] = {
    "ViT-B/32": VIT_B_32,
    "ViT-B/16": ClipArch(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                         vision_patch_size=16, context_length=77, vocab_size=CLIP_VOCAB_SIZE,
                         transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-L/14": ClipArch(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                         vision_patch_size=14, context_length=77, vocab_size=CLIP_VOCAB_SIZE,
                         transformer_width=768, transformer_heads=12, transformer_layers=12),
    "ViT-L/14@336px": ClipArch(embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
                               vision_patch_size=14, context_length=77, vocab_size=CLIP_VOCAB_SIZE,
                               transformer_width=768, transformer_heads=12, transformer_layers=12),
}
