"""Shared builders for the train tests: a tiny separable features dir and a tiny config.

(No tests here; the train test files import these helpers.)
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import load_params, to_dict
from pipeline.features.store import FORMAT, VERSION
from pipeline.io import write_json, write_npy, write_parquet
from pipeline.losses import LossConfig
from pipeline.model import ModelConfig, ModelParams
from pipeline.train.config import TrainConfig
from pipeline.train.variants import VARIANTS, resolve_train

DIM, FRAMES, DRAWS = 16, 4, 3
ROOT = Path(__file__).resolve().parents[1]


def make_features(root: Path, n_train: int = 32, n_test: int = 4, captions_per_video: int = 2,
                  seed: int = 0, noise: float = 0.6, caption_sign: float = -1.0, dim: int = DIM,
                  frames_per_video: int = FRAMES) -> Path:
    """A features dir whose videos are separable but not for an untrained head: every video has
    a random direction ``c``; its frames and visual tags are ``c`` plus noise, its captions and
    their textual tags ``caption_sign * c`` plus noise (anti-aligned by default, so the head
    must learn negative confidences). Test videos come first in the arrays (their rows must be
    skipped); some train videos have a padded last frame slot."""
    DIM, FRAMES = dim, frames_per_video  # noqa: N806 - local override of the defaults
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    centre = rng.normal(size=(n, DIM))
    split = ["test"] * n_test + ["train"] * n_train
    video_ids = [f"v{i:03d}" for i in range(n)]
    frames = centre[:, None, :] + noise * rng.normal(size=(n, FRAMES, DIM))
    mask = np.ones((n, FRAMES), dtype=bool)
    mask[n_test::5, -1] = False  # every 5th train video has a padded last slot
    frames[~mask] = 0.0
    cap_video = np.repeat(np.arange(n), captions_per_video)
    captions = caption_sign * centre[cap_video] + noise * rng.normal(size=(len(cap_video), DIM))
    tags_v = centre[:, None, :] + noise * rng.normal(size=(n, DRAWS, DIM))
    tags_t = captions[:, None, :] + noise * rng.normal(size=(len(cap_video), DRAWS, DIM))
    root.mkdir(parents=True, exist_ok=True)
    write_parquet(pd.DataFrame({"video_id": video_ids, "row": np.arange(n), "split": split}),
                  root / "videos.parquet")
    caption_index = np.tile(np.arange(captions_per_video), n)
    write_parquet(pd.DataFrame({
        "caption_id": [f"{video_ids[v]}#{k}" for v, k in zip(cap_video, caption_index)],
        "video_id": [video_ids[v] for v in cap_video], "row": np.arange(len(cap_video)),
        "split": [split[v] for v in cap_video], "caption_index": caption_index}), root / "captions.parquet")
    write_json({"format": FORMAT, "version": VERSION, "dim": DIM, "num_frames": FRAMES,
                "train_tag_draws": DRAWS, "train_tags_per_draw": 2, "infer_tags": 3, "seed": 0,
                "backbone_sha256": "0" * 64}, root / "meta.json")
    write_npy(frames.astype(np.float16), root / "frames.npy")
    write_npy(mask, root / "frame_mask.npy")
    write_npy(captions.astype(np.float16), root / "captions.npy")
    write_npy(tags_v.astype(np.float16), root / "tags_visual_train.npy")
    write_npy(tags_t.astype(np.float16), root / "tags_textual_train.npy")
    write_npy(tags_v[:, 0].astype(np.float16), root / "tags_visual_infer.npy")
    write_npy(tags_t[:, 0].astype(np.float16), root / "tags_textual_infer.npy")
    return root


def tiny_params(tags: tuple[str, ...] = ("visual", "textual")) -> ModelParams:
    """The head's knobs of the tiny test runs (``train.model`` + the variant's ``tags``)."""
    return ModelParams(tags=tuple(tags), num_concepts=4, pool_temperature=3.0, pool_masking="before_softmax",
                       temporal_layers=1, temporal_heads=2, temporal_ln_eps=1e-12, concept_projection="chunk",
                       confidence_hidden_ratio=2, init_logit_scale=float(np.log(100.0)))


def variant_tags(variant: str) -> tuple[str, ...]:
    return tuple(VARIANTS.get(variant).overrides["model"]["tags"])


def tiny_model(variant: str = "macvr", dim: int = DIM, frames: int = FRAMES) -> ModelConfig:
    """A resolved head config of ``variant`` (its registered tags) for D=dim, frames slots."""
    return ModelConfig.resolve(tiny_params(variant_tags(variant)), embed_dim=dim, max_frames=frames)


def tiny_loss(alpha_align: float = 1.0, max_words: int = 32) -> LossConfig:
    return LossConfig(alpha=0.01, beta=0.005, alpha_align=alpha_align, max_words=max_words)


def train_section(**changes: Any) -> dict[str, Any]:
    """A ``params.yaml: train`` mapping of the tiny runs (no variant-only keys).

    Knobs the tests rely on are set here; any other key (e.g. one added to the code later) keeps
    the repository's params.yaml value, so the helper follows the train section's schema."""
    defaults = load_params(ROOT / "params.yaml")["train"]
    model = {**defaults["model"], **to_dict(tiny_params())}
    del model["tags"]
    section = {**copy.deepcopy(defaults), **dict(
        mode="cached", epochs=2, batch_size=8, lr=1e-3, clip_lr=1e-6, weight_decay=0.2,
        adam_betas=[0.9, 0.98], adam_eps=1e-6, warmup_fraction=0.1, grad_clip=1.0, seed=7, device="cpu",
        precision="fp32", torch_threads=0, num_workers=0, checkpoint_every=1, tags_per_item=2, log_every=2,
        monitor_videos=16, init_temporal_from_backbone=False, logit_scale="head", model=model,
        loss={**defaults["loss"], "alpha": 0.01, "beta": 0.005})}
    section.update(changes)
    return section


def tiny_config(variant: str = "macvr", **changes: Any) -> TrainConfig:
    """The resolved TrainConfig of ``variant`` (the train section + the registered variant's
    overrides, as the train stage resolves it), with top-level ``changes``."""
    config = resolve_train(train_section(), variant, {}, TrainConfig)
    return dataclasses.replace(config, **changes)
