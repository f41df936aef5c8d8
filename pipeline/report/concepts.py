"""Latent concepts of test pairs, their t-SNE map and how well they separate (paper Fig. 6).

For a test pair (caption i, its video), the textual concepts are e_t^k(i) and the visual
concepts e_v^k(i, i) (the video pooled by its own caption), k = 1..K. Each concept vector is
L2-normalised first (the model compares concepts by cosine), then all 2K points per pair go
through one t-SNE per model. The silhouette score of the concept index (cosine distance, in the
original d-dim space, not the 2-D map) measures the separation the paper shows visually:
higher = concepts better separated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.evaluation.outputs import save_figure
from pipeline.evaluation.sets import TextSet, VideoSet
from pipeline.model import MacVR


@dataclass(frozen=True)
class PairConcepts:
    text: np.ndarray   # [n, K, d] e_t^k of each caption
    video: np.ndarray  # [n, K, d] e_v^k of its video, pooled by that caption


@torch.no_grad()
def pair_concepts(model: MacVR, texts: TextSet, videos: VideoSet, batch: int = 32) -> PairConcepts:
    """Concepts of matched pairs (row i of ``texts`` with row i of ``videos``)."""
    if len(texts) != len(videos):
        raise ValueError(f"matched pairs needed: {len(texts)} captions vs {len(videos)} videos")
    like = model.logit_scale

    def rows(x, s: slice) -> torch.Tensor | None:
        if x is None:
            return None
        return torch.from_numpy(np.asarray(x[s], dtype=np.float32)).to(like.device)

    text_parts, video_parts = [], []
    for lo in range(0, len(texts), batch):
        s = slice(lo, lo + batch)
        mask = torch.from_numpy(np.asarray(videos.mask[s], dtype=bool)).to(like.device)
        tags_v = rows(videos.tags, s) if model.config.use_visual_tags else None
        tags_t = rows(texts.tags, s) if model.config.use_textual_tags else None
        out = model(rows(texts.text, s), rows(videos.frames, s), mask, tags_v, tags_t)
        text_parts.append(out.text_concepts.float().cpu().numpy())
        video_parts.append(out.video_concepts.float().cpu().numpy())
    return PairConcepts(np.concatenate(text_parts), np.concatenate(video_parts))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def points(concepts: PairConcepts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors [2nK, d], concept index [2nK], modality [2nK] (0 text, 1 video)."""
    n, k, d = concepts.text.shape
    x = np.concatenate([_unit(concepts.text).reshape(-1, d), _unit(concepts.video).reshape(-1, d)])
    label = np.tile(np.arange(k), 2 * n)
    modality = np.repeat([0, 1], n * k)
    return x, label, modality


def separation(concepts: PairConcepts) -> dict[str, float]:
    """Silhouette of the concept index (cosine): over all points, textual only, visual only."""
    from sklearn.metrics import silhouette_score

    x, label, modality = points(concepts)
    out = {}
    for name, sel in (("all", slice(None)), ("textual", modality == 0), ("visual", modality == 1)):
        xs, ls = x[sel], label[sel]
        ok = len(np.unique(ls)) >= 2 and len(ls) > len(np.unique(ls))
        out[name] = float(silhouette_score(xs, ls, metric="cosine")) if ok else float("nan")
    return out


def tsne_map(concepts: PairConcepts, perplexity: float, max_iter: int, seed: int) -> np.ndarray:
    """2-D t-SNE coordinates of :func:`points` (same order)."""
    from sklearn.manifold import TSNE

    x, _, _ = points(concepts)
    # scikit-learn needs perplexity < number of points.
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=max_iter, init="pca", random_state=seed,
                learning_rate="auto")
    return tsne.fit_transform(x)


def plot_tsne(maps: Mapping[str, tuple[np.ndarray, PairConcepts]], path: str | Path, dpi: int) -> None:
    """One panel per model: textual concepts as circles, visual ones as triangles, coloured by k."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(6.0 * len(maps), 5.6))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    k = next(iter(maps.values()))[1].text.shape[1]
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    for ax, (title, (xy, concepts)) in zip(axes, maps.items()):
        _, label, modality = points(concepts)
        for m, marker in ((0, "o"), (1, "^")):
            sel = modality == m
            ax.scatter(xy[sel, 0], xy[sel, 1], c=[cmap(i % cmap.N) for i in label[sel]], marker=marker, s=14,
                       alpha=0.75, linewidths=0)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color=cmap(i % cmap.N), marker="s", linestyle="", label=f"concept {i + 1}")
               for i in range(k)]
    handles += [Line2D([], [], color="grey", marker="o", linestyle="", label="textual"),
                Line2D([], [], color="grey", marker="^", linestyle="", label="visual")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.12)
    save_figure(fig, path, dpi)
