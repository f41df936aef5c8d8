"""Frozen CLIP features (frames, captions, tag sentences) in a memory-mappable directory.

Public API::

    FeaturesConfig                      # params.yaml: features
    extract_features(cfg, backbone, frames_dir, videos, captions, tags, out) -> meta
    load_features(path, mmap=True) -> FeatureStore
    tag_sentence(tags), train_sentences(...), infer_sentence(tags, m)
"""

from __future__ import annotations

from pipeline.features.config import FeaturesConfig
from pipeline.features.extract import extract_features
from pipeline.features.store import FeatureStore, load_features
from pipeline.tags.sentences import PREFIX, infer_sentence, tag_sentence, train_sentences

__all__ = ["FeaturesConfig", "extract_features", "FeatureStore", "load_features", "PREFIX",
           "infer_sentence", "tag_sentence", "train_sentences"]
