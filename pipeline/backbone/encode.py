"""CLIP inputs and encoders: tokenising texts and normalising uint8 frames, as CLIP expects.

Shared by the features stage, end-to-end fine-tuning and ``macvr search``. The encoders
return CLIP's projected embeddings (image CLS / text EOT), NOT L2-normalised. They do not
switch off autograd: wrap calls in ``torch.no_grad()`` when only features are needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.backbone.arch import clip_module

# CLIP's training statistics (clip.clip._transform), RGB order.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tokenize(texts: Sequence[str], context_length: int) -> tuple[torch.Tensor, np.ndarray]:
    """Token ids ``[B, context_length]`` exactly as ``clip.tokenize(..., truncate=True)``.

    Also returns a bool array marking the texts that were truncated (longer than the
    context once wrapped in start/end tokens), so callers can report them.
    """
    clip = clip_module()
    tokenizer = clip.clip._tokenizer
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    truncated = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        ids = [sot, *tokenizer.encode(text), eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = eot  # the EOT position is where CLIP reads the text embedding
            truncated[i] = True
        out[i, : len(ids)] = torch.tensor(ids)
    return out, truncated


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_tokens(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on the tokens up to the batch's last EOT: same result, less work.

    CLIP's text attention is causal, so the padding after a text's EOT token never reaches
    that token's output; dropping the columns every text pads saves most of the compute on
    short captions and tag sentences.
    """
    length = int(tokens.argmax(dim=1).max()) + 1 if len(tokens) else 1  # EOT has the top id
    return model.encode_text(tokens[:, :length].to(model_device(model))).float()


def encode_texts(model: torch.nn.Module, texts: Sequence[str]) -> torch.Tensor:
    """Projected EOT embeddings ``[B, D]`` (float32) for a list of texts."""
    tokens, _ = tokenize(texts, model.context_length)
    return encode_tokens(model, tokens)


def preprocess_frames(frames: np.ndarray | torch.Tensor, resolution: int,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 RGB ``[B, H, W, 3]`` -> normalised float ``[B, 3, R, R]``.

    Frames that are not ``R x R`` get CLIP's geometry: bicubic resize of the shorter side to
    ``R`` (antialiased, like PIL), then a centre crop, then clamping back into [0, 1].
    """
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    x = x.to(device).permute(0, 3, 1, 2).float().div_(255.0)
    h, w = x.shape[-2:]
    if (h, w) != (resolution, resolution):
        scale = resolution / min(h, w)
        size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        x = x[..., top: top + resolution, left: left + resolution].clamp_(0.0, 1.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_frames(model: torch.nn.Module, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Projected CLS embeddings ``[B, D]`` (float32) for uint8 frames ``[B, H, W, 3]``."""
    pixels = preprocess_frames(frames, model.visual.input_resolution, model_device(model))
    return model.encode_image(pixels).float()
