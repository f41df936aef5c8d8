"""The CLIP backbone: the weights file format, tiny pretraining, official ViT-B/32 loading,
and the text/frame encoders every later stage reuses.

Public API (``clip``, which imports torchvision, is imported on first use, not here)::

    load_clip(weights_path, device) -> clip.model.CLIP          # float32, eval mode
    encode_texts(model, texts) / encode_frames(model, uint8 [B,H,W,3]) -> [B, D]
    tokenize(texts, context_length), preprocess_frames(frames, resolution, device)
    BackboneConfig, TinyClipConfig, build_backbone(cfg, frames_dir, captions, out)
"""

from __future__ import annotations

from pipeline.backbone.arch import VIT_B_32, ClipArch
from pipeline.backbone.config import BackboneConfig, TinyClipConfig
from pipeline.backbone.encode import encode_frames, encode_texts, preprocess_frames, tokenize
from pipeline.backbone.io import file_sha256, load_clip, read_weights, save_weights

__all__ = [
    "VIT_B_32", "ClipArch", "BackboneConfig", "TinyClipConfig", "encode_frames", "encode_texts",
    "preprocess_frames", "tokenize", "file_sha256", "load_clip", "read_weights", "save_weights",
]
