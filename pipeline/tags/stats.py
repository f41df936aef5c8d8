"""Tag statistics like the paper's Tab. 1 (#unique tags, average tags per item), per split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd


@dataclass
class ResponseCounts:
    """What the raw answers of one modality looked like, before cleaning."""

    responses: int = 0
    empty: int = 0  # blank answers
    unparseable: int = 0  # non-blank, but no candidate tag could be read
    truncated: int = 0  # finish_reason == "length" (max_tokens hit)
    no_tags_after_cleaning: int = 0  # parsed, but every candidate was dropped
    items_missing_temperatures: int = 0  # items without an answer at every temperature
    items_without_responses: int = 0  # items of the prepared data with no answer at all

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
