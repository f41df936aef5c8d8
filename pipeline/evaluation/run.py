"""The evaluate stage: score the test split with a trained head, write metrics, plots and ranks.

Output directory (``eval/<variant>``), for the report and for re-checks with ``macvr metrics``::

    similarity.npy        float32 [C, V]   test captions x test videos
    querybank_t2v.npy     float32 [M, V]   first caption of each training video x test videos
    querybank_v2t.npy     float32 [M_v, C] training videos x test captions
    captions.parquet      caption_id, video_id, column       (row i = similarity row i)
    caption_video.npy     int64 [C]        each test caption's video column (``--ids``)
    videos.parquet        video_id                            (row j = similarity column j)
    querybank_t2v.parquet caption_id, video_id               (querybank_t2v.npy rows)
    querybank_v2t.parquet video_id                           (querybank_v2t.npy rows)
    ranks_t2v.parquet     caption_id, video_id, none, dsl[, qb]  (1-based rank of the ground truth)
    ranks_v2t.parquet     video_id, none, dsl[, qb]              (best rank among its captions)
    top_t2v.parquet       caption_id, strategy, position, video_id, score  (top_k videos per caption)
    metrics.json          full-precision metrics + counts and settings

``macvr metrics eval/macvr/similarity.npy --ids eval/macvr/caption_video.npy --querybank
eval/macvr/querybank_t2v.npy --querybank-v2t eval/macvr/querybank_v2t.npy`` (with the same
retrieval settings) reproduces the metrics from these files. The DVC metrics file holds the same
nested metrics rounded to 2 decimals; the plots directory holds the recall@K CSVs and PNG.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import to_dict
from pipeline.device import resolve_device
from pipeline.evaluation.config import EvaluateConfig
from pipeline.evaluation.items import EvalRows, select_rows
from pipeline.evaluation.outputs import (DIRECTIONS, plot_recall_curves, rank_table, recall_curve,
                                         round_metrics, top_table, write_csv)
from pipeline.evaluation.sets import EvalSets, TextSet, VideoSet, cached_sets
from pipeline.features.store import load_features
from pipeline.io import atomic_dir, write_json, write_npy, write_parquet
from pipeline.model import MacVR
from pipeline.retrieval import dsl, qb_norm, rank_metrics, strategy_ranks
from pipeline.scoring import score_matrix
from pipeline.train.checkpoint import load_trained, load_trained_clip

log = logging.getLogger(__name__)


class EvaluateError(ValueError):
    """Inputs that do not fit together (wrong variant, feature width, missing finetune inputs)."""


@dataclass(frozen=True)
class Scores:
    sim: np.ndarray                  # [C, V]
    querybank_t2v: np.ndarray | None  # [M, V]
    querybank_v2t: np.ndarray | None  # [M_v, C]



def score_sets(model: MacVR, texts: TextSet, videos: VideoSet, config: EvaluateConfig) -> np.ndarray:
    """float32 [len(texts), len(videos)] with the chunked exact scorer."""
    out = np.empty((len(texts), len(videos)), dtype=np.float32)
    if out.size == 0:
        return out
    return score_matrix(model, texts.text, videos.frames, videos.mask, videos.tags, texts.tags,
                        method=config.method, text_chunk=config.text_chunk, video_chunk=config.video_chunk,
                        text_block=config.text_block, video_block=config.video_block, out=out, progress=True)


def score_all(model: MacVR, sets: EvalSets, config: EvaluateConfig) -> Scores:
    """The test matrix and both querybanks (None when there are no training items)."""
    sim = score_sets(model, sets.test_text, sets.test_videos, config)
    qb_t2v = score_sets(model, sets.qb_text, sets.test_videos, config) if len(sets.qb_text) else None
    qb_v2t = None
    if len(sets.qb_videos):
        # Scored as captions x querybank videos (the scorer's orientation), stored video-major.
        qb_v2t = np.ascontiguousarray(score_sets(model, sets.test_text, sets.qb_videos, config).T)
    return Scores(sim, qb_t2v, qb_v2t)


def compute_ranks(scores: Scores, caption_video: np.ndarray,
                  config: EvaluateConfig) -> dict[str, dict[str, np.ndarray]]:
    """Per-query ranks of every direction and strategy; tie warnings go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranks = strategy_ranks(scores.sim, caption_video, scores.querybank_t2v, scores.querybank_v2t,
                               config=config.retrieval)
    for warning in caught:
        log.warning("%s", warning.message)
    return ranks


def metrics_of(ranks: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """``evaluate_all``'s nesting from per-query ranks (R1/5/10/50, MdR, MnR)."""
    return {d: {s: rank_metrics(r) for s, r in by.items()} for d, by in ranks.items()}


def _check_model(model: MacVR, variant: str, store_dim: int, num_frames: int, model_path: Path) -> None:
    cfg = model.config
    if cfg.variant != variant:
        raise EvaluateError(f"{model_path} is a {cfg.variant} checkpoint, but --variant is {variant}")
    if cfg.embed_dim != store_dim:
        raise EvaluateError(f"{model_path}: the head takes {cfg.embed_dim}-d features, the features are {store_dim}-d")
    if num_frames > cfg.max_frames:
        raise EvaluateError(f"{model_path}: the head has {cfg.max_frames} frame positions, the features "
                            f"have {num_frames} frame slots")


def _path(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)


def _sets(model_path: Path, model: MacVR, rows: EvalRows, store, config: EvaluateConfig, device: torch.device,
          frames_dir: Path | None, captions_path: Path | None, tags_path: Path | None) -> tuple[EvalSets, str]:
    """Cached features, or (finetune checkpoints) the items re-encoded by the checkpoint's CLIP."""
    clip = load_trained_clip(model_path, device)
    if clip is None:
        return cached_sets(store, rows), "cached"
    uses_tags = model.config.use_visual_tags or model.config.use_textual_tags
    missing = [name for name, value in (("--frames", frames_dir), ("--captions", captions_path),
                                        ("--tags", tags_path if uses_tags else True)) if value is None]
    if missing:
        raise EvaluateError(f"{model_path} was fine-tuned end to end: its CLIP re-encodes the test items, "
                            f"which needs {', '.join(missing)}")
    from pipeline.evaluation.encode import encoded_sets

    log.info("finetune checkpoint: re-encoding %d + %d captions and %d + %d videos with its CLIP",
             len(rows.caption_ids), len(rows.qb_caption_ids), len(rows.video_ids), len(rows.qb_video_ids))
    sets = encoded_sets(clip, rows, frames_dir, captions_path, tags_path if uses_tags else None,
                        int(store.meta["infer_tags"]), config.encode_batch_size)
    return sets, "finetune"


def top_videos(scores: Scores, rows: EvalRows, config: EvaluateConfig):
    """Each test caption's ``top_k`` videos under every t2v strategy (a long DataFrame).

    Scores are the strategy's re-scored values: comparable within a caption only (QB-Norm rows
    may be log-normalised or raw, see ``pipeline.retrieval.qb_norm``).
    """
    r = config.retrieval
    builders = {"none": lambda: scores.sim, "dsl": lambda: dsl(scores.sim, r.dsl.t2v_temp)}
    if scores.querybank_t2v is not None:
        builders["qb"] = lambda: qb_norm(scores.sim, scores.querybank_t2v, r.qb_t2v.beta, r.qb_t2v.k, r.qb_t2v.theta)
    # One re-scored copy alive at a time.
    parts = [top_table({name: build()}, rows.caption_ids, rows.video_ids, config.top_k)
             for name, build in builders.items()]
    return pd.concat(parts, ignore_index=True)


def write_outputs(out_dir: Path, scores: Scores, rows: EvalRows, ranks: dict, metrics: dict, info: dict,
                  top: pd.DataFrame) -> None:
    """The evaluation directory (replaced whole, atomically)."""
    with atomic_dir(out_dir) as tmp:
        write_parquet(top, tmp / "top_t2v.parquet")
        write_npy(scores.sim, tmp / "similarity.npy")
        if scores.querybank_t2v is not None:
            write_npy(scores.querybank_t2v, tmp / "querybank_t2v.npy")
        if scores.querybank_v2t is not None:
            write_npy(scores.querybank_v2t, tmp / "querybank_v2t.npy")
        write_npy(rows.caption_video, tmp / "caption_video.npy")
        video_of = np.asarray(rows.video_ids)[rows.caption_video]
        write_parquet(pd.DataFrame({"caption_id": rows.caption_ids, "video_id": video_of,
                                    "column": rows.caption_video}), tmp / "captions.parquet")
        write_parquet(pd.DataFrame({"video_id": rows.video_ids}), tmp / "videos.parquet")
        write_parquet(pd.DataFrame({"caption_id": rows.qb_caption_ids, "video_id": rows.qb_caption_videos}),
                      tmp / "querybank_t2v.parquet")
        write_parquet(pd.DataFrame({"video_id": rows.qb_video_ids}), tmp / "querybank_v2t.parquet")
        write_parquet(rank_table({"caption_id": rows.caption_ids, "video_id": video_of}, ranks["t2v"]),
                      tmp / "ranks_t2v.parquet")
        write_parquet(rank_table({"video_id": rows.video_ids}, ranks["v2t"]), tmp / "ranks_v2t.parquet")
        write_json({"metrics": metrics, **info}, tmp / "metrics.json")


def write_plots(plots_dir: Path, ranks: dict, config: EvaluateConfig, variant: str) -> None:
    """recall_<direction>.csv (DVC plots) and recall.png."""
    curves = {d: recall_curve(ranks[d], config.recall_ks) for d in DIRECTIONS}
    with atomic_dir(plots_dir) as tmp:
        for direction, df in curves.items():
            write_csv(df, tmp / f"recall_{direction}.csv")
        plot_recall_curves(curves, variant, tmp / "recall.png", config.plot_dpi)


def evaluate(config: EvaluateConfig, variant: str, model_path: str | Path, features_dir: str | Path,
             out_dir: str | Path, metrics_path: str | Path, plots_dir: str | Path, *,
             frames_dir: str | Path | None = None, captions_path: str | Path | None = None,
             tags_path: str | Path | None = None) -> dict:
    """Evaluate one trained variant; returns the full-precision metrics."""
    started = time.monotonic()
    model_path, features_dir = Path(model_path), Path(features_dir)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device, "evaluate.device")
    model, train_config = load_trained(model_path, device)
    store = load_features(features_dir)
    _check_model(model, variant, store.dim, int(store.frames.shape[1]), model_path)
    rows = select_rows(store.videos, store.captions_index, config.querybank_size, str(features_dir))
    sets, mode = _sets(model_path, model, rows, store, config, device, _path(frames_dir), _path(captions_path),
                       _path(tags_path))
    log.info("%s: %d test captions x %d test videos; querybanks t2v %d, v2t %d (%s features, %s scorer, %s)",
             variant, len(rows.caption_ids), len(rows.video_ids), len(rows.qb_caption_ids),
             len(rows.qb_video_ids), mode, config.method, device)
    scores = score_all(model, sets, config)
    ranks = compute_ranks(scores, rows.caption_video, config)
    metrics = metrics_of(ranks)
    info = {"variant": variant, "features": mode, "device": str(device),
            "counts": {"test_captions": len(rows.caption_ids), "test_videos": len(rows.video_ids),
                       "querybank_t2v": len(rows.qb_caption_ids), "querybank_v2t": len(rows.qb_video_ids)},
            "evaluate": to_dict(config), "train_mode": train_config.mode,
            "seconds": round(time.monotonic() - started, 3)}
    write_outputs(Path(out_dir), scores, rows, ranks, metrics, info, top_videos(scores, rows, config))
    write_json(round_metrics(metrics, 2), metrics_path)
    write_plots(Path(plots_dir), ranks, config, variant)
    return metrics
