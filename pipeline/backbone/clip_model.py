"""A :class:`Backbone` over clip-anytorch's ``clip.model.CLIP`` (OpenAI CLIP and the tiny CLIP).

Texts are tokenised with CLIP's BPE to ``max_words`` tokens (start + up to ``max_words - 2``
tokens + end, zero padding), as the official MAC-VR loader does; CLIP's text attention is causal,
so the embedding read at the end token ignores the padding, and clip-anytorch slices its
position table to the sequence length, so short sequences need no padding to 77.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.backbone.arch import ClipArch, clip_module
from pipeline.backbone.base import BLOCK_KEYS, Backbone, TextBatch


def clip_tokenize(texts: Sequence[str], length: int) -> TextBatch:
    """CLIP BPE ids ``[B, length]``: start, the text's tokens cut to ``length - 2``, end, zeros.

    Equal to ``clip.tokenize(texts, context_length=length, truncate=True)``.
    """
    if length < 3:
        raise ValueError(f"a text needs at least 3 tokens (start, a word, end), got max_words={length}")
    tokenizer = clip_module().clip._tokenizer
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    truncated = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        tokens = [sot, *tokenizer.encode(text), eot]
        if len(tokens) > length:
            tokens = tokens[:length]
            tokens[-1] = eot  # the end token is where CLIP reads the text embedding
            truncated[i] = True
        ids[i, : len(tokens)] = torch.tensor(tokens)
    return TextBatch(ids, ids != 0, truncated)


class ClipTokenizer:
    """Picklable :func:`clip_tokenize` with the model's context as the upper bound."""

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length

    def __call__(self, texts: Sequence[str], max_words: int) -> TextBatch:
        if max_words > self.context_length:
            raise ValueError(f"max_words {max_words} exceeds the text context of this CLIP "
                             f"({self.context_length} tokens)")
        return clip_tokenize(texts, max_words)


class ClipModel(Backbone):
    """``clip.model.CLIP`` (ViT vision tower) behind the backbone interface."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        if not hasattr(model.visual, "conv1"):
            raise ValueError("only ViT CLIP models are supported (got a ResNet vision tower)")
        self.model = model
        self.kind = kind  # type: ignore[misc]  # "clip" or "tiny": both are this class

    @property
    def inner(self) -> nn.Module:
        return self.model

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.model.visual.input_resolution)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def tokenize(self, texts: Sequence[str], max_words: int) -> TextBatch:
        return ClipTokenizer(self.context_length)(texts, max_words)

    def text_tokenizer(self):
        return ClipTokenizer(self.context_length)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Causal attention: columns after a batch's last end token never reach any end token,
        # so they are dropped (most of the compute for short captions and tag sentences).
        length = int(ids.argmax(dim=1).max()) + 1 if len(ids) else 1  # the end token has the top id
        return self.model.encode_text(ids[:, :length].to(self.device)).float()

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device)).float()

    def text_block_states(self, layers: int) -> list[dict[str, torch.Tensor]]:
        blocks = self.model.transformer.resblocks
        if len(blocks) < layers:
            raise ValueError(f"this CLIP has {len(blocks)} text layers, {layers} were asked for")
        return [{k: v for k, v in block.state_dict().items() if k in BLOCK_KEYS} for block in blocks[:layers]]

    def text_positions(self, count: int) -> torch.Tensor:
        table = self.model.positional_embedding
        if table.shape[0] < count:
            raise ValueError(f"this CLIP has {table.shape[0]} text positions, {count} were asked for")
        return table[:count]

    @property
    def text_width(self) -> int:
        return int(self.model.transformer.width)

    @property
    def text_heads(self) -> int:
        return int(self.model.transformer.resblocks[0].attn.num_heads)

    def arch(self) -> dict[str, Any]:
        return ClipArch.of(self.model).to_dict()

    @classmethod
    def from_arch(cls, arch: dict[str, Any], state_dict: dict[str, torch.Tensor] | None, kind: str,
                  where: str = "arch") -> "ClipModel":
        """Rebuild from :meth:`arch` (+ weights); float32, eval mode, on the CPU."""
        model = ClipArch.from_dict(arch, where=where).build()
        if state_dict is not None:
            try:
                model.load_state_dict(state_dict, strict=True)
            except RuntimeError as err:
                raise ValueError(f"{where}: state dict does not match its architecture: {err}") from err
        return cls(model.float().eval(), kind).eval()
