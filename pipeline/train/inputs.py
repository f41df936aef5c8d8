"""What one variant reads of the tag-dependent inputs, as a small manifest (``data/inputs/<variant>.json``).

DVC re-runs a stage when a dependency's hash changes, and ``foreach`` gives every variant the same
dependency list. The features folder also holds the tag encodings, and ``tags.parquet`` the tags,
so a tag control or a tag knob would re-run DiCoSA's training and evaluation, which read no tag
(their outputs come out byte-identical). ``train@<v>`` and ``evaluate@<v>`` therefore depend on
the features' tag-free files one by one and on this manifest, written by ``inputs@<v>``: the
content hashes of exactly the tag files the variant reads (each modality's arrays only when its
``model.tags`` has it, ``tags.parquet`` when it has any), and the features' ``meta.json`` without
the tag-only keys for a variant without tags. The manifest changes exactly when something the
variant reads changes, so DVC re-runs exactly the variants a change can affect.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from pipeline.io import read_json

# The features' tag arrays per modality (pipeline/features/store.py writes them).
TAG_ARRAYS = {"visual": ("tags_visual_train.npy", "tags_visual_infer.npy"),
              "textual": ("tags_textual_train.npy", "tags_textual_infer.npy")}
# meta.json keys that only describe the tag encodings (the features params of the tag draws,
# and counts that include tag sentences): left out of a tag-free variant's manifest.
TAG_META_KEYS = ("tag_control", "train_tag_draws", "train_tags_per_draw", "infer_tags", "seed",
                 "sentence_prefix", "auxiliary")
TAG_META_COUNTS = ("distinct_texts", "truncated_texts", "visual_items_without_tags", "textual_items_without_tags")
# The features' files every variant reads; train/evaluate list them as DVC deps one by one.
TAG_FREE_FILES = ("frames.npy", "frame_mask.npy", "captions.npy", "videos.parquet", "captions.parquet")


def file_md5(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tag_free_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta.json`` without what only the tag encodings decide."""
    out = {k: copy.deepcopy(v) for k, v in meta.items() if k not in TAG_META_KEYS}
    if isinstance(out.get("counts"), dict):
        out["counts"] = {k: v for k, v in out["counts"].items() if k not in TAG_META_COUNTS}
    return out


def variant_inputs(tags: list[str] | tuple[str, ...], features: str | Path, tags_table: str | Path) -> dict[str, Any]:
    """The manifest of a variant whose ``model.tags`` is ``tags`` (``[]``: DiCoSA)."""
    features = Path(features)
    unknown = sorted(set(tags) - set(TAG_ARRAYS))
    if unknown:
        raise ValueError(f"unknown tag modality {unknown[0]!r} (expected {sorted(TAG_ARRAYS)})")
    meta_path = features / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not found (did the features stage run?)")
    meta = read_json(meta_path)
    files: dict[str, str] = {}
    for modality in sorted(tags):
        for name in TAG_ARRAYS[modality]:
            path = features / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: not found (did the features stage run?)")
            files[f"features/{name}"] = file_md5(path)
    if tags:
        table = Path(tags_table)
        if not table.is_file():
            raise FileNotFoundError(f"{table}: not found (did the clean_tags stage run?)")
        files["tags.parquet"] = file_md5(table)
    return {"tags": sorted(tags), "features_meta": meta if tags else tag_free_meta(meta), "files": files}
