"""Shared builders for the evaluate / report / search tests: a tiny but complete project.

(No tests here; test_evaluate*.py, test_report*.py and test_search*.py import these helpers.)

``make_project(root)`` writes, through the real constructors: prepared tables, a frames dir,
tags.parquet, a tiny random CLIP (``backbone.pt``), the features dir (``extract_features``) and
random-weight DiCoSA / MAC-VR checkpoints (version 2, as the train stage writes them). Splits are interleaved in row order, one test video
has no test caption (left out of the gallery), one training video has no caption (in the v2t
querybank only), and one training video lists its captions out of ``caption_index`` order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.backbone.arch import CLIP_VOCAB_SIZE, ClipArch
from pipeline.backbone.clip_model import ClipModel
from pipeline.backbone.io import payload, save_weights
from pipeline.config import to_dict
from pipeline.evaluation import EvaluateConfig
from pipeline.evaluation.config import BootstrapConfig
from pipeline.features import FeaturesConfig, extract_features
from pipeline.features.config import AuxiliaryInputs
from pipeline.io import write_npy, write_parquet
from pipeline.model import MacVR
from pipeline.retrieval import DSLParams, QBDirection, QBParams, RetrievalConfig
from pipeline.retrieval.strategies import NoParams
from pipeline.text import TextConfig
from pipeline.train import checkpoint as ckpt
from tests.test_train_common import DIM, FRAMES, tiny_config, tiny_model

SIZE = 16  # CLIP input resolution of the tiny backbone
INFER_TAGS = 3
MAX_WORDS = 32  # text.max_words of the project (the tiny CLIP's whole context)
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white"]
SHAPES = ["circle", "square", "triangle"]

# video_id -> split, in row order. v05 (test) has no caption; v08 (train) has none either.
SPLITS = {f"v{i:02d}": s for i, s in enumerate(
    ["test", "train", "train", "test", "val", "test", "train", "test", "train", "train",
     "test", "train", "test", "train"])}
NO_CAPTION = {"v05", "v08"}


def tiny_arch(width: int = DIM) -> ClipArch:
    return ClipArch(embed_dim=width, image_resolution=SIZE, vision_layers=1, vision_width=64, vision_patch_size=8,
                    context_length=MAX_WORDS, vocab_size=CLIP_VOCAB_SIZE, transformer_width=32, transformer_heads=2,
                    transformer_layers=1)


def tiny_backbone(width: int = DIM) -> ClipModel:
    """A random tiny CLIP behind the backbone interface (uses the global torch RNG)."""
    return ClipModel(tiny_arch(width).build(), "tiny").eval()


def _captions() -> pd.DataFrame:
    rows = []
    for i, (vid, split) in enumerate(SPLITS.items()):
        if vid in NO_CAPTION:
            continue
        n = 1 + i % 3
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[i % len(SHAPES)]
        order = list(range(n))
        if vid == "v06":
            order = order[::-1]  # caption_index 2, 1, 0 in row order: the querybank takes index 0
        for k in order:
            rows.append({"caption_id": f"{vid}#{k}", "video_id": vid, "split": split, "caption_index": k,
                         "text": f"a {colour} {shape} {['moves left', 'grows', 'spins'][k % 3]} number {i}"})
    return pd.DataFrame(rows)


def _tags(captions: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for i, (vid, split) in enumerate(SPLITS.items()):
        rows.append({"item_id": vid, "modality": "visual", "split": split,
                     "tags": [COLOURS[i % 7], SHAPES[i % 3], "motion", f"scene {i % 4}", "background"]})
    for _, c in captions.iterrows():
        words = c["text"].split()
        rows.append({"item_id": c["caption_id"], "modality": "textual", "split": c["split"],
                     "tags": [words[1], words[2], "movement", f"idea {len(words) % 3}"]})
    return pd.DataFrame(rows)


def make_project(root: Path, seed: int = 0) -> dict[str, Path]:
    """Every input of evaluate / report / search; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = list(SPLITS)
    n = len(ids)
    write_parquet(pd.DataFrame({
        "video_id": ids, "path": [f"videos/{v}.mp4" for v in ids], "split": list(SPLITS.values()),
        "duration": 2.0, "fps": 10.0, "num_frames": 20, "width": 96, "height": 96, "dataset": "synthetic"}),
        root / "videos.parquet")
    captions = _captions()
    write_parquet(captions, root / "captions.parquet")
    write_parquet(_tags(captions), root / "tags.parquet")

    frames_dir = root / "frames"
    pixels = np.repeat(rng.integers(0, 256, size=(n, 1, 1, 1, 3), dtype=np.uint8), FRAMES, axis=1)
    pixels = np.broadcast_to(pixels, (n, FRAMES, SIZE, SIZE, 3)).copy()
    pixels += rng.integers(0, 40, size=pixels.shape, dtype=np.uint8)
    mask = np.ones((n, FRAMES), dtype=bool)
    mask[[0, 2], -1] = False  # a padded test video and a padded training video
    pixels[~mask] = 0
    write_npy(pixels, frames_dir / "clip_frames.npy")
    write_npy(mask, frames_dir / "clip_mask.npy")
    write_parquet(pd.DataFrame({"video_id": ids, "row": np.arange(n), "split": list(SPLITS.values()),
                                "status": "ok", "error": "", "source_frames": 20,
                                "frame_indices": [list(range(0, 20, 5))] * n}), frames_dir / "index.parquet")

    torch.manual_seed(seed)
    save_weights(tiny_backbone(), root / "backbone.pt", {"kind": "test"})
    extract_features(FeaturesConfig(encode=True, batch_size=16, device="cpu", torch_threads=0, train_tag_draws=2, train_tags_per_draw=2,
                                    infer_tags=INFER_TAGS, seed=3, tag_control="real",
                                    auxiliary=AuxiliaryInputs("tags", "tags")), TextConfig(MAX_WORDS),
                     backbone=root / "backbone.pt", frames_dir=frames_dir, videos_path=root / "videos.parquet",
                     captions_path=root / "captions.parquet", tags_path=root / "tags.parquet",
                     out=root / "features", progress=False)
    for i, variant in enumerate(("dicosa", "macvr")):
        save_checkpoint(root / "models" / variant / "model.pt", variant, seed=seed + 10 + i)
    return {"root": root, "videos": root / "videos.parquet", "captions": root / "captions.parquet",
            "tags": root / "tags.parquet", "frames": frames_dir, "backbone": root / "backbone.pt",
            "features": root / "features", "models": root / "models"}


def random_head(variant: str, seed: int, mode: str = "cached") -> tuple[MacVR, object]:
    """A random-weight head whose scores spread widely (a larger last layer than the init's), and
    the resolved train config of ``variant`` it stands for."""
    config = tiny_config(variant, mode=mode)
    torch.manual_seed(seed)
    head = MacVR(tiny_model(variant))
    with torch.no_grad():
        head.confidence.fc2.weight.mul_(50.0)
        head.confidence.fc2.bias.fill_(0.5)
    return head.eval(), config


def save_checkpoint(path: Path, variant: str, seed: int, backbone: ClipModel | None = None,
                    head: MacVR | None = None, max_words: int = MAX_WORDS, padding: str = "zero") -> MacVR:
    """A ``model.pt`` as the train stage writes it (finetune mode when ``backbone`` is given)."""
    made, config = random_head(variant, seed, "finetune" if backbone is not None else "cached")
    if head is None:
        head = made
    ckpt.save({"kind": "model", "variant": variant, "model_config": to_dict(head.config),
               "run": {"train": to_dict(config), "text": {"max_words": max_words}, "padding": padding, "features": {}},
               "epoch": 1, "global_step": 1, "world_size": 1, "fingerprint": "test",
               "model": ckpt.cpu_state_dict(head), "backbone": None if backbone is None else payload(backbone),
               "metrics": {}}, path)
    return head


# theta 1: the tiny querybanks are too small for the reference thresholds (3 / 5) to activate.
RETRIEVAL = RetrievalConfig(ties="optimistic", strategies={
    "none": NoParams(), "dsl": DSLParams(t2v_temp=0.01, v2t_temp=0.01),
    "qb": QBParams(t2v=QBDirection(beta=20.0, k=1, theta=1), v2t=QBDirection(beta=20.0, k=1, theta=1))})
BOOTSTRAP = BootstrapConfig(resamples=200, seed=0, level=0.95)


def eval_config(**changes) -> EvaluateConfig:
    base = EvaluateConfig(retrieval=RETRIEVAL, bootstrap=BOOTSTRAP, device="cpu", torch_threads=0, method="fast",
                          text_chunk=3,
                          video_chunk=2, text_block=5, video_block=3, querybank_size=0, encode_batch_size=8,
                          top_k=4, recall_ks=[1, 2, 5, 10], plot_dpi=50)
    return dataclasses.replace(base, **changes)


def eval_params(**changes) -> dict:
    """The ``evaluate`` section as params.yaml holds it."""
    return to_dict(eval_config(**changes))
