"""The reader of ``tags.parquet`` (written by the clean_tags stage, :mod:`pipeline.tags.build`).

Every consumer (features, fine-tuning, evaluation re-encoding, search, report) reads the cleaned
tags through :func:`read_tags`: one row per (item, modality) with its ordered tag list; an item
without a row has no tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.io import read_parquet

MODALITIES = ("visual", "textual")
COLUMNS = ["item_id", "modality", "split", "tags"]


@dataclass(frozen=True)
class TagTable:
    """``visual[video_id]`` / ``textual[caption_id]``: ordered tag lists; ``frame``: the table."""

    visual: dict[str, list[str]]
    textual: dict[str, list[str]]
    frame: pd.DataFrame

    def of(self, modality: str) -> dict[str, list[str]]:
        if modality not in MODALITIES:
            raise ValueError(f"unknown tag modality {modality!r} (expected one of {MODALITIES})")
        return self.visual if modality == "visual" else self.textual

    def __getitem__(self, modality: str) -> dict[str, list[str]]:
        return self.of(modality)

    def lists(self, modality: str, ids) -> list[list[str]]:
        """Tag lists of ``ids`` in order; an id without a row gets ``[]``."""
        table = self.of(modality)
        return [list(table.get(str(i), [])) for i in ids]


def table_of_lists(df, path: str | Path, column: str = "tags") -> TagTable:
    """A checked :class:`TagTable` from rows (item_id, modality, <column>: an ordered list): known
    modalities, one row per item and modality. Auxiliary captions use the same layout."""
    bad = sorted(set(df["modality"]) - set(MODALITIES))
    if bad:
        raise ValueError(f"{path}: unknown modality {bad[0]!r} (expected one of {MODALITIES})")
    out = {}
    for modality in MODALITIES:
        part = df[df["modality"] == modality]
        dup = part["item_id"][part["item_id"].duplicated()]
        if len(dup):
            raise ValueError(f"{path} ({modality}): duplicate item_id {dup.iloc[0]!r} ({len(dup)} duplicates)")
        out[modality] = {str(item): [] if values is None else [str(t) for t in values]
                         for item, values in zip(part["item_id"], part[column])}
    return TagTable(visual=out["visual"], textual=out["textual"], frame=df)


def read_tags(path: str | Path) -> TagTable:
    """Read and check ``tags.parquet`` (known modalities, one row per item and modality)."""
    return table_of_lists(read_parquet(path, columns=COLUMNS), path)
