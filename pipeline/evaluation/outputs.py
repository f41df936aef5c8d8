"""What the evaluate stage writes: rounded DVC metrics, recall@K curves (CSV + PNG), rank tables.

Recall curves are *wide* CSVs, one per direction (``K, none, dsl, qb``; recall in percent):
DVC's line templates draw one line per ``y`` column, so dvc.yaml can overlay the strategies of
both variants in one chart (``y: {plots/dicosa/recall_t2v.csv: [none, dsl, qb], ...}``). The
PNGs are drawn here because ``dvc plots show``'s HTML needs a CDN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic_path

from pipeline.retrieval import DIRECTIONS, strategy_label

DIRECTION_LABELS = {"t2v": "text-to-video", "v2t": "video-to-text"}


def round_metrics(metrics: Mapping, digits: int = 2):
    """The same nesting with every float rounded (ints and strings unchanged)."""
    if isinstance(metrics, Mapping):
        return {k: round_metrics(v, digits) for k, v in metrics.items()}
    if isinstance(metrics, float):
        return round(metrics, digits)
    return metrics


def recall_curve(ranks: Mapping[str, np.ndarray], ks: Sequence[int]) -> pd.DataFrame:
    """Recall@K in percent for every K (rows) and strategy (columns), from 1-based ranks."""
    out = {"K": np.asarray(ks, dtype=np.int64)}
    for strategy in ranks:  # the configured strategy order
        r = np.asarray(ranks[strategy], dtype=np.float64)
        out[strategy] = np.array([100.0 * np.count_nonzero(r <= k) / r.size for k in ks])
    return pd.DataFrame(out)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def save_figure(fig, path: str | Path, dpi: int) -> None:
    """Save a matplotlib Figure as PNG atomically (the temporary name has no .png suffix)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def log_k_axis(ax, k_max: int) -> None:
    """Log-scaled K axis with plain integer labels at 1, 2, 5, 10, 20, 50, ... up to ``k_max``."""
    from matplotlib.ticker import NullFormatter

    ticks = [m * 10 ** e for e in range(0, len(str(max(int(k_max), 1))) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if t <= max(k_max, 1)]
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_recall_curves(curves: Mapping[str, pd.DataFrame], title: str, path: str | Path, dpi: int) -> None:
    """One PNG with a panel per direction and a line per strategy (log-scaled K)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(5.0 * len(curves), 3.8))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (direction, df) in zip(axes, curves.items()):
        for strategy in [c for c in df.columns if c != "K"]:
            ax.plot(df["K"], df[strategy], marker="o", markersize=3, label=strategy_label(strategy))
        log_k_axis(ax, int(df["K"].max()))
        ax.set_ylim(0, 100.5)
        ax.set_xlabel("K")
        ax.set_ylabel("recall@K (%)")
        ax.set_title(f"{title}: {DIRECTION_LABELS.get(direction, direction)}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    save_figure(fig, path, dpi)


def rank_table(ids: Mapping[str, Sequence], ranks: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Id columns then one integer-or-float rank column per strategy (1-based), in ``ranks``' order."""
    df = pd.DataFrame({k: list(v) for k, v in ids.items()})
    for strategy in ranks:
        r = np.asarray(ranks[strategy])
        df[strategy] = r.astype(np.int64) if np.all(r == np.round(r)) else r.astype(np.float64)
    return df


def top_items(scores: np.ndarray, k: int, block_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Columns [Q, k'] of each row's k best items, best first (equal scores: lower column
    first), and their scores; k' = min(k, number of columns)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    cols = np.empty((scores.shape[0], k), dtype=np.int64)
    for lo in range(0, scores.shape[0], block_rows):
        block = np.asarray(scores[lo:lo + block_rows], dtype=np.float64)
        cols[lo:lo + block_rows] = np.argsort(-block, axis=1, kind="stable")[:, :k]
    return cols, np.take_along_axis(scores, cols, axis=1).astype(np.float64)


def top_table(matrices: Mapping[str, np.ndarray], query_ids: Sequence[str], item_ids: Sequence[str],
              k: int) -> pd.DataFrame:
    """Long table: caption_id, strategy, position (1 = best), video_id, score."""
    items = np.asarray(item_ids, dtype=object)
    parts = []
    for strategy, matrix in matrices.items():
        cols, vals = top_items(matrix, k)
        q, kk = cols.shape
        parts.append(pd.DataFrame({
            "caption_id": np.repeat(np.asarray(query_ids, dtype=object), kk),
            "strategy": strategy,
            "position": np.tile(np.arange(1, kk + 1, dtype=np.int64), q),
            "video_id": items[cols.reshape(-1)],
            "score": vals.reshape(-1),
        }))
    return pd.concat(parts, ignore_index=True)
