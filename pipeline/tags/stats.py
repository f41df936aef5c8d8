"""Tag statistics like the paper's Tab. 1 (#unique tags, average tags per item), per split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd


@dataclass
class ResponseCounts:
    """What the raw answers of one modality looked like, before cleaning.

    Failed answers (by reason) are counted apart, in ``metrics["failed"]``.
    """

    responses: int = 0  # raw rows: one per item and temperature
    tagged: int = 0  # kept answers (verdict ok or too_long)
    too_long: int = 0  # kept answers cut to max_tags candidates
    failed: int = 0  # rows whose item failed at that temperature: no tags from it
    no_tags_after_cleaning: int = 0  # kept, but every candidate was dropped by the cleaning
    items_missing_temperatures: int = 0  # items without a kept answer at some temperature
    items_failed: int = 0  # items with rows but no kept answer at all: no row in tags.parquet
    items_without_responses: int = 0  # items of the prepared data absent from every raw file

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _summary(tag_lists: Sequence[Sequence[str]]) -> dict[str, float | int]:
    unique = {t for tags in tag_lists for t in tags}
    n = len(tag_lists)
    return {
        "items": n,
        "unique_tags": len(unique),
        "avg_tags": round(sum(len(t) for t in tag_lists) / n, 4) if n else 0.0,
        "items_without_tags": sum(1 for t in tag_lists if not len(t)),
    }


def tag_statistics(tags: pd.DataFrame, splits: Iterable[str] = ("train", "val", "test")) -> dict:
    """``{modality: {split: summary, "all": summary}}`` from a tags table."""
    out: dict[str, dict] = {}
    for modality, group in tags.groupby("modality", sort=True):
        per: dict[str, dict] = {}
        for split in list(splits) + sorted(set(group["split"]) - set(splits)):
            rows = group[group["split"] == split]
            if len(rows):
                per[split] = _summary(list(rows["tags"]))
        per["all"] = _summary(list(group["tags"]))
        out[str(modality)] = per
    return out
