"""The evaluate stage: score the test split with a trained head, write metrics, plots and ranks.

When the features have a validation split (the synthetic default; DiDeMo's val), it is scored the
same way and reported beside the test split (``val`` in the metrics files, with its intervals):
choices are made on val, and the test split is only reported.

Output directory (``eval/<variant>``), for the report and for re-checks with ``macvr metrics``::

    similarity.npy        float32 [C, V]   test captions x test videos
    querybank_t2v.npy     float32 [M, V]   first caption of each training video x test videos
    querybank_v2t.npy     float32 [M_v, C] training videos x test captions
    captions.parquet      caption_id, video_id, column       (row i = similarity row i)
    caption_video.npy     int64 [C]        each test caption's video column (``--ids``)
    videos.parquet        video_id                            (row j = similarity column j)
    querybank_t2v.parquet caption_id, video_id               (querybank_t2v.npy rows)
    querybank_v2t.parquet video_id                           (querybank_v2t.npy rows)
    ranks_t2v.parquet     caption_id, video_id, column, <strategy>... [, <strategy>_tied]
                          (1-based rank of the ground truth per strategy; tie counts under ties: official)
    ranks_v2t.parquet     video_id, column, <strategy>... [, <strategy>_tied]  (best rank among its captions)
    top_t2v.parquet       caption_id, strategy, position, video_id, score  (top_k videos per caption)
    metrics.json          full-precision metrics + counts and settings

``macvr metrics eval/macvr/similarity.npy --ids eval/macvr/caption_video.npy --querybank
eval/macvr/querybank_t2v.npy --querybank-v2t eval/macvr/querybank_v2t.npy --params params.yaml``
reproduces the metrics from these files. The DVC metrics file holds the same nested metrics,
each with its 95% bootstrap interval (``R1``, ``R1_lo``, ``R1_hi``, ...: test videos resampled with
all their captions, see :mod:`pipeline.retrieval.uncertainty`) and each strategy's diagnostics
(e.g. QB-Norm's activated gallery items), rounded to 2 decimals; the plots directory holds the
recall@K CSVs and PNG.
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
from pipeline.evaluation.items import EvalRows, has_split, select_rows
from pipeline.evaluation.outputs import (plot_recall_curves, rank_table, recall_curve, round_metrics, top_table,
                                         write_csv)
from pipeline.evaluation.sets import EvalSets, TextSet, VideoSet
from pipeline.evaluation.trained import ItemSources, ScoringInputError, TrainedModel
from pipeline.features.store import load_features
from pipeline.io import atomic_dir, write_json, write_npy, write_parquet
from pipeline.model import MacVR
from pipeline.retrieval import DIRECTIONS, STRATEGIES, RankedRetrieval, rank_all
from pipeline.retrieval.uncertainty import Entries, bootstrap_metrics, draws
from pipeline.scoring import score_matrix
from pipeline.train.checkpoint import CheckpointError

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
    """The test matrix and, when a configured strategy needs them, both querybanks."""
    sim = score_sets(model, sets.test_text, sets.test_videos, config)
    if not config.retrieval.needs_querybank:
        return Scores(sim, None, None)
    qb_t2v = score_sets(model, sets.qb_text, sets.test_videos, config) if len(sets.qb_text) else None
    qb_v2t = None
    if len(sets.qb_videos):
        # Scored as captions x querybank videos (the scorer's orientation), stored video-major.
        qb_v2t = np.ascontiguousarray(score_sets(model, sets.test_text, sets.qb_videos, config).T)
    return Scores(sim, qb_t2v, qb_v2t)


def compute_ranks(scores: Scores, caption_video: np.ndarray, config: EvaluateConfig) -> RankedRetrieval:
    """Per-query ranks of every direction and strategy; tie warnings go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranked = rank_all(scores.sim, caption_video, scores.querybank_t2v, scores.querybank_v2t,
                          config=config.retrieval)
    for warning in caught:
        log.warning("%s", warning.message)
    return ranked


def metrics_with_intervals(ranked: RankedRetrieval, caption_video: np.ndarray, config: EvaluateConfig
                           ) -> dict[str, dict[str, dict[str, float]]]:
    """``{direction: {strategy: {R1, R1_lo, R1_hi, ..., <diagnostics>}}}``: each metric with its
    cluster-bootstrap interval (test videos resampled with their captions), plus what the
    strategy reported (e.g. QB-Norm's activation counts, as ``qb_<name>``)."""
    n_videos = int(caption_video.max()) + 1 if len(caption_video) else 0
    weights = draws(n_videos, config.bootstrap.resamples, config.bootstrap.seed)
    clusters = {"t2v": np.asarray(caption_video), "v2t": np.arange(n_videos)}
    official = config.retrieval.ties == "official"
    out: dict[str, dict[str, dict[str, float]]] = {}
    for direction, by in ranked.ranks.items():
        out[direction] = {}
        for strategy, ranks in by.items():
            entries = Entries.of(ranks, clusters[direction], n_videos,
                                 ranked.tied[direction][strategy] if official else None)
            values = bootstrap_metrics(entries, weights, config.bootstrap.level)
            for key, value in ranked.info[direction][strategy].items():
                values[f"{strategy}_{key}"] = value
            out[direction][strategy] = values
    return out


def _sets(model: TrainedModel, rows: EvalRows, store, config: EvaluateConfig, sources: ItemSources) -> EvalSets:
    """Cached features, or (finetune checkpoints) the items re-encoded by the checkpoint's backbone."""
    if model.finetuned:
        log.info("finetune checkpoint: re-encoding %d + %d captions and %d + %d videos with its backbone",
                 len(rows.caption_ids), len(rows.qb_caption_ids), len(rows.video_ids), len(rows.qb_video_ids))
    qb = config.retrieval.needs_querybank
    empty = np.zeros(0, dtype=np.int64)
    return EvalSets(
        test_text=model.text_set(store, rows.test_captions, rows.caption_ids, sources, "test captions"),
        test_videos=model.video_set(store, rows.test_videos, rows.video_ids, sources, "test videos"),
        qb_text=model.text_set(store, rows.qb_captions if qb else empty, rows.qb_caption_ids if qb else [],
                               sources, "querybank captions"),
        qb_videos=model.video_set(store, rows.qb_videos if qb else empty, rows.qb_video_ids if qb else [],
                                  sources, "querybank videos"))


def top_videos(scores: Scores, rows: EvalRows, config: EvaluateConfig) -> pd.DataFrame:
    """Each test caption's ``top_k`` videos under every t2v strategy (a long DataFrame).

    Scores are the strategy's re-scored values: comparable within a caption only (QB-Norm rows
    may be log-normalised or raw, see ``pipeline.retrieval.strategies.querybank_norm``).
    """
    parts = []
    for name, params in config.retrieval.strategies.items():
        strategy = STRATEGIES.get(name)
        if strategy.needs_querybank and scores.querybank_t2v is None:
            continue
        rescored = strategy.apply(scores.sim, "t2v", params, scores.querybank_t2v)  # one copy alive at a time
        parts.append(top_table({name: rescored.scores}, rows.caption_ids, rows.video_ids, config.top_k))
    return pd.concat(parts, ignore_index=True)


def _rank_frames(rows: EvalRows, ranked: RankedRetrieval) -> dict[str, pd.DataFrame]:
    video_of = np.asarray(rows.video_ids)[rows.caption_video]
    official = ranked.ties == "official"
    out = {}
    for direction, ids in (("t2v", {"caption_id": rows.caption_ids, "video_id": video_of,
                                    "column": rows.caption_video}),
                           ("v2t", {"video_id": rows.video_ids, "column": np.arange(len(rows.video_ids))})):
        table = rank_table(ids, ranked.ranks[direction])
        if official:
            for strategy, tied in ranked.tied[direction].items():
                table[f"{strategy}_tied"] = tied.astype(np.int64)
        out[direction] = table
    return out


def write_outputs(out_dir: Path, scores: Scores, rows: EvalRows, ranked: RankedRetrieval, metrics: dict,
                  info: dict, top: pd.DataFrame) -> None:
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
        for direction, table in _rank_frames(rows, ranked).items():
            write_parquet(table, tmp / f"ranks_{direction}.parquet")
        write_json({"metrics": metrics, **info}, tmp / "metrics.json")


def write_plots(plots_dir: Path, ranked: RankedRetrieval, config: EvaluateConfig, variant: str) -> None:
    """recall_<direction>.csv (DVC plots) and recall.png."""
    curves = {d: recall_curve(ranked.ranks[d], config.recall_ks) for d in DIRECTIONS}
    with atomic_dir(plots_dir) as tmp:
        for direction, df in curves.items():
            write_csv(df, tmp / f"recall_{direction}.csv")
        plot_recall_curves(curves, variant, tmp / "recall.png", config.plot_dpi)


def _validation(model: TrainedModel, store, test_sets: EvalSets, config: EvaluateConfig, sources: ItemSources,
                where: str) -> dict | None:
    """``{metrics, counts}`` of the validation split (same strategies, querybanks and bootstrap
    settings as the test split), or None when the features have no validation split."""
    if not has_split(store.videos, store.captions_index, "val"):
        return None
    rows = select_rows(store.videos, store.captions_index, config.querybank_size, where, split="val")
    try:
        sets = EvalSets(test_text=model.text_set(store, rows.test_captions, rows.caption_ids, sources, "val captions"),
                        test_videos=model.video_set(store, rows.test_videos, rows.video_ids, sources, "val videos"),
                        qb_text=test_sets.qb_text, qb_videos=test_sets.qb_videos)
    except ScoringInputError as err:
        raise EvaluateError(str(err)) from None
    ranked = compute_ranks(score_all(model.head, sets, config), rows.caption_video, config)
    return {"metrics": metrics_with_intervals(ranked, rows.caption_video, config),
            "counts": {"captions": len(rows.caption_ids), "videos": len(rows.video_ids)}}


def evaluate(config: EvaluateConfig, variant: str, model_path: str | Path, features_dir: str | Path,
             out_dir: str | Path, metrics_path: str | Path, plots_dir: str | Path, *,
             frames_dir: str | Path | None = None, captions_path: str | Path | None = None,
             tags_path: str | Path | None = None) -> dict:
    """Evaluate one trained variant; returns the full-precision metrics (with intervals)."""
    started = time.monotonic()
    model_path, features_dir = Path(model_path), Path(features_dir)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device, "evaluate.device")
    model = TrainedModel.load(model_path, device)
    if model.variant != variant:
        raise EvaluateError(f"{model_path} is a {model.variant} checkpoint, but --variant is {variant}")
    store = load_features(features_dir)
    try:
        model.check_features(store)
        rows = select_rows(store.videos, store.captions_index, config.querybank_size, str(features_dir))
        sources = ItemSources(frames=None if frames_dir is None else Path(frames_dir),
                              captions=None if captions_path is None else Path(captions_path),
                              tags=None if tags_path is None else Path(tags_path), batch_size=config.encode_batch_size)
        sets = _sets(model, rows, store, config, sources)
    except ScoringInputError as err:
        raise EvaluateError(str(err)) from None
    log.info("%s: %d test captions x %d test videos; querybanks t2v %d, v2t %d (%s features, %s scorer, %s)",
             variant, len(rows.caption_ids), len(rows.video_ids), len(sets.qb_text), len(sets.qb_videos),
             "finetune" if model.finetuned else "cached", config.method, device)
    scores = score_all(model.head, sets, config)
    ranked = compute_ranks(scores, rows.caption_video, config)
    metrics = metrics_with_intervals(ranked, rows.caption_video, config)
    info = {"variant": variant, "features": "finetune" if model.finetuned else "cached", "device": str(device),
            "counts": {"test_captions": len(rows.caption_ids), "test_videos": len(rows.video_ids),
                       "querybank_t2v": len(sets.qb_text), "querybank_v2t": len(sets.qb_videos)},
            "skipped": ranked.skipped, "evaluate": to_dict(config), "train_mode": model.train_mode}
    val = _validation(model, store, sets, config, sources, str(features_dir))
    if val is not None:
        info["val"] = val
    write_outputs(Path(out_dir), scores, rows, ranked, metrics, info, top_videos(scores, rows, config))
    write_json({**round_metrics(metrics, 2), **({"val": round_metrics(val["metrics"], 2)} if val else {})},
               metrics_path)
    write_plots(Path(plots_dir), ranked, config, variant)
    log.info("%s evaluated in %.1f s", variant, time.monotonic() - started)
    return metrics
