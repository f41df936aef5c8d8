"""Backbones: one interface (:class:`Backbone`), several families registered by ``backbone.kind``.

Public API (``clip`` / ``open_clip`` are imported on first use, not here)::

    FAMILIES                                   # registry: tiny | clip | open_clip
    load_backbone(weights_path, device) -> Backbone   # float32, eval mode
    Backbone.tokenize / encode_text / encode_frames / blank_frame_embedding / ...
    padded_frame_features, encode_text_array, encode_video_array   # batched encoders
    BackboneConfig, build_backbone(cfg, frames_dir, captions, out, max_words)

A new family is one module (a ``BackboneFamily`` subclass with ``@register_family``) plus one
import line below.
"""

from __future__ import annotations

from pipeline.backbone.base import (BLOCK_KEYS, FAMILIES, Backbone, BackboneError, BackboneFamily, BuildInputs,
                                    TextBatch, register_family)
# Built-in families register themselves on import (one line each).
from pipeline.backbone import tiny  # noqa: F401  tiny
from pipeline.backbone import clip_family  # noqa: F401  clip
from pipeline.backbone import open_clip_family  # noqa: F401  open_clip
from pipeline.backbone.config import BackboneConfig
from pipeline.backbone.encode import encode_text_array, encode_video_array, padded_frame_features
from pipeline.backbone.io import file_sha256, from_payload, load_backbone, payload, read_weights, save_weights

__all__ = [
    "BLOCK_KEYS", "Backbone", "BackboneConfig", "BackboneError", "BackboneFamily", "BuildInputs", "FAMILIES",
    "TextBatch", "encode_text_array", "encode_video_array", "file_sha256", "from_payload", "load_backbone",
    "padded_frame_features", "payload", "read_weights", "register_family", "save_weights",
]
