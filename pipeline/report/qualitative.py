"""Qualitative examples: queries whose rank changes most from the baseline to MAC-VR.

As in the paper's Fig. 5 (successes) and Fig. 15 (failures): the query, its textual tags, the
ground-truth video (a strip of its frames) with its visual tags, both ranks, and each model's
top-ranked videos with their visual tags.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.evaluation.outputs import save_figure


@dataclass(frozen=True)
class TopVideo:
    video_id: str
    score: float
    is_ground_truth: bool
    visual_tags: list[str]


@dataclass(frozen=True)
class Example:
    kind: str  # "improved" | "worsened"
    caption_id: str
    text: str
    video_id: str
    rank_baseline: float
    rank_candidate: float
    textual_tags: list[str]
    visual_tags: list[str]
    top: dict[str, list[TopVideo]] = field(default_factory=dict)  # variant -> its top videos

    def as_dict(self) -> dict:
        return asdict(self)


def select_examples(baseline: pd.DataFrame, candidate: pd.DataFrame, strategy: str, improved: int,
                    worsened: int) -> pd.DataFrame:
    """caption_id, video_id, rank_baseline, rank_candidate, gain (baseline - candidate rank), kind.

    ``improved``: the largest positive gains (ties: the better candidate rank, then caption id);
    ``worsened``: the largest losses (ties: the better baseline rank, then caption id).
    """
    for name, df in (("baseline", baseline), ("candidate", candidate)):
        if strategy not in df.columns:
            raise ValueError(f"{name} ranks have no '{strategy}' column (strategies: "
                             f"{[c for c in df.columns if c not in ('caption_id', 'video_id')]})")
    merged = baseline[["caption_id", "video_id", strategy]].merge(
        candidate[["caption_id", strategy]], on="caption_id", suffixes=("_b", "_c"), validate="one_to_one")
    if len(merged) != len(baseline) or len(merged) != len(candidate):
        raise ValueError("the two variants were evaluated on different test captions; re-run evaluate for both")
    merged = merged.rename(columns={f"{strategy}_b": "rank_baseline", f"{strategy}_c": "rank_candidate"})
    merged["gain"] = merged["rank_baseline"] - merged["rank_candidate"]
    up = merged[merged["gain"] > 0].sort_values(["gain", "rank_candidate", "caption_id"],
                                                ascending=[False, True, True], kind="stable").head(improved)
    down = merged[merged["gain"] < 0].sort_values(["gain", "rank_baseline", "caption_id"],
                                                  ascending=[True, True, True], kind="stable").head(worsened)
    return pd.concat([up.assign(kind="improved"), down.assign(kind="worsened")], ignore_index=True)


def build_examples(selected: pd.DataFrame, texts: dict[str, str], tags: dict[str, dict[str, list[str]]],
                   tops: dict[str, pd.DataFrame], strategy: str, top_videos: int, max_tags: int) -> list[Example]:
    """Example records; ``tops[variant]`` is that variant's ``top_t2v.parquet``."""
    lists = {}
    for variant, top in tops.items():
        part = top[(top["strategy"] == strategy) & (top["position"] <= top_videos)].sort_values(
            ["caption_id", "position"], kind="stable")
        lists[variant] = {cid: list(zip(g["video_id"], g["score"]))
                          for cid, g in part.groupby("caption_id", sort=False)}
    out = []
    for row in selected.itertuples(index=False):
        top = {variant: [TopVideo(str(v), float(s), v == row.video_id, tags["visual"].get(v, [])[:max_tags])
                         for v, s in by.get(row.caption_id, [])]
               for variant, by in lists.items()}
        out.append(Example(kind=row.kind, caption_id=row.caption_id, text=texts.get(row.caption_id, ""),
                           video_id=row.video_id, rank_baseline=float(row.rank_baseline),
                           rank_candidate=float(row.rank_candidate),
                           textual_tags=tags["textual"].get(row.caption_id, [])[:max_tags],
                           visual_tags=tags["visual"].get(row.video_id, [])[:max_tags], top=top))
    return out


def frame_strip(frames, video_id: str, count: int) -> np.ndarray | None:
    """``count`` evenly spaced real frames of a video side by side, uint8 [S, count' * S, 3], from a
    :class:`~pipeline.frames.store.FrameStore` (None: a video it does not hold)."""
    try:
        clip, mask = frames.clip(video_id)
    except KeyError:
        return None
    real = np.flatnonzero(np.asarray(mask))
    if len(real) == 0:
        return None
    pick = real[np.unique(np.linspace(0, len(real) - 1, min(count, len(real))).round().astype(int))]
    return np.concatenate(list(np.asarray(clip)[pick]), axis=1)


def _tags_line(tags: list[str]) -> str:
    return ", ".join(tags) if tags else "(none)"


def plot_examples(examples: list[Example], strips: dict[str, np.ndarray | None], names: tuple[str, str],
                  path: str | Path, dpi: int) -> None:
    """One row per example: the ground-truth frames, then query, tags, ranks and top videos."""
    from matplotlib.figure import Figure

    rows = max(len(examples), 1)
    fig = Figure(figsize=(13.0, 2.3 * rows))
    grid = fig.add_gridspec(rows, 2, width_ratios=[1.0, 2.6], wspace=0.05, hspace=0.35)
    base, cand = names
    for i, ex in enumerate(examples):
        ax_img, ax_txt = fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1])
        strip = strips.get(ex.video_id)
        if strip is not None:
            ax_img.imshow(strip)
        else:
            ax_img.text(0.5, 0.5, "(no frames)", ha="center", va="center", transform=ax_img.transAxes)
        ax_img.set_title(f"ground truth {ex.video_id}", fontsize=8)
        ax_img.axis("off")
        ax_txt.axis("off")
        lines = [f"[{ex.kind}] Query: {ex.text}",
                 f"Rank: {base} {ex.rank_baseline:g} -> {cand} {ex.rank_candidate:g}",
                 f"TT (query): {_tags_line(ex.textual_tags)}",
                 f"VT (ground truth): {_tags_line(ex.visual_tags)}"]
        for variant, videos in ex.top.items():
            shown = ", ".join(f"{v.video_id}{'*' if v.is_ground_truth else ''}" for v in videos)
            lines.append(f"{variant} top: {shown}")
        wrapped = "\n".join(textwrap.fill(line, 120, subsequent_indent="    ") for line in lines)
        ax_txt.text(0.0, 1.0, wrapped, va="top", ha="left", fontsize=8, family="monospace",
                    transform=ax_txt.transAxes)
    if not examples:
        ax = fig.add_subplot(grid[0, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "no query changed rank between the two variants", ha="center", va="center")
    save_figure(fig, path, dpi)
