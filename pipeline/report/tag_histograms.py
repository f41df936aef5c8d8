"""Tag frequency histograms per modality and split (paper Fig. 16-29) and tag statistics.

A tag's frequency is the number of items (videos for visual tags, captions for textual tags)
whose cleaned tag list contains it, so an item counts once per tag.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.evaluation.outputs import save_figure
from pipeline.tags.stats import tag_statistics as summary_statistics

MODALITIES = ("visual", "textual")


def tag_counts(tags: pd.DataFrame, modality: str, split: str) -> pd.DataFrame:
    """Columns tag, items (descending; ties alphabetical), share (% of the split's items)."""
    part = tags[(tags["modality"] == modality) & (tags["split"] == split)]
    counter: Counter[str] = Counter()
    for item_tags in part["tags"]:
        counter.update(set(item_tags if item_tags is not None else []))
    df = pd.DataFrame(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])), columns=["tag", "items"])
    df["share"] = 100.0 * df["items"] / max(len(part), 1)
    return df


def tag_statistics(tags: pd.DataFrame, splits: list[str]) -> list[dict]:
    """Per modality and split: items, items without tags, mean tags per item, distinct tags.

    The numbers are clean_tags' own (``pipeline.tags.stats``, the paper's Tab. 1), laid out as
    one row per (modality, split) for the report's tables; absent combinations count zero.
    """
    stats = summary_statistics(tags, splits)
    empty = {"items": 0, "items_without_tags": 0, "avg_tags": 0.0, "unique_tags": 0}
    out = []
    for modality in MODALITIES:
        for split in splits:
            s = stats.get(modality, {}).get(split, empty)
            out.append({"modality": modality, "split": split, "items": s["items"],
                        "items_without_tags": s["items_without_tags"], "mean_tags": s["avg_tags"],
                        "distinct_tags": s["unique_tags"]})
    return out


def plot_tag_histogram(counts: pd.DataFrame, top: int, title: str, path: str | Path, dpi: int) -> None:
    """Horizontal bars, most frequent on top; the figure grows with the bar count so that 250
    labels stay readable (about 0.13 inch per bar)."""
    from matplotlib.figure import Figure

    shown = counts.head(top)
    n = max(len(shown), 1)
    fig = Figure(figsize=(8.0, 1.2 + 0.13 * n))
    ax = fig.subplots()
    y = np.arange(len(shown))
    ax.barh(y, shown["items"].to_numpy(), color="#4C72B0", height=0.8)
    ax.set_yticks(y, shown["tag"].tolist(), fontsize=7 if n > 40 else 9)
    ax.invert_yaxis()
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlabel("items with the tag")
    ax.set_title(f"{title} (top {len(shown)} of {len(counts)} tags)")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(y=0)
    if len(shown) == 0:
        ax.text(0.5, 0.5, "no tags", ha="center", va="center", transform=ax.transAxes)
    save_figure(fig, path, dpi)
