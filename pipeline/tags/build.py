"""Stage clean_tags: raw answers of all temperatures -> ``tags.parquet`` + tag metrics.

Each raw file holds one temperature; files are merged in increasing temperature (t07, t08,
t09, t10), so an item's tags start with its t07 tags and later temperatures only add new ones.
Only kept answers (verdict ``ok``/``too_long``) contribute, through the candidate tags the tag
stage parsed and capped; a failed (item, temperature) contributes nothing and is counted by
reason in ``metrics["failed"]``. An item with no kept answer at all gets no row (never an
invented empty tag list); one whose kept answers all clean to nothing gets an empty list.
Splits come from the prepared data (videos.parquet for visual tags, captions.parquet for
textual tags); rows follow the prepared files' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.io import read_parquet, write_json, write_parquet
from pipeline.tags.clean import CleanConfig, TagCleaner, merge_ordered, normalise
from pipeline.tags.lexicon import load_stopwords
from pipeline.tags.pos import load_pos_tagger
from pipeline.tags.raw import FAILURES, TAGGED, read_raw
from pipeline.tags.stats import ResponseCounts, tag_statistics

TAGS_SCHEMA = pa.schema([("item_id", pa.string()), ("modality", pa.string()),
                         ("split", pa.string()), ("tags", pa.list_(pa.string()))])


def read_splits(path: Path, id_column: str) -> dict[str, str]:
    """item id -> split, in file order."""
    df = read_parquet(path, columns=[id_column, "split"])
    return dict(zip(df[id_column].astype(str), df["split"].astype(str)))


def load_temperatures(paths: Sequence[Path]) -> list[tuple[float, pd.DataFrame]]:
    """Raw files sorted by temperature; two files of one temperature are an error."""
    loaded = []
    for path in paths:
        df = read_raw(path)
        temperature = float(df["temperature"].iloc[0]) if len(df) else float("nan")
        loaded.append((temperature, df, path))
    loaded.sort(key=lambda x: x[0])
    temps = [t for t, _, _ in loaded]
    if len(set(temps)) != len(temps):
        raise ValueError(f"several raw files share a temperature: {[str(p) for p in paths]}")
    return [(t, df) for t, df, _ in loaded]


def clean_modality(raw_paths: Sequence[Path], splits: dict[str, str], modality: str,
                   cleaner: TagCleaner) -> tuple[list[dict], ResponseCounts, dict[str, int]]:
    """Rows of ``tags.parquet`` for one modality, how its raw answers looked, failures by reason."""
    counts = ResponseCounts()
    failed = dict.fromkeys(FAILURES, 0)
    kept: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for _, df in load_temperatures(raw_paths):
        for item, verdict, candidates in zip(df["item_id"], df["verdict"], df["candidates"]):
            if item not in splits:
                raise ValueError(f"{modality} answer for unknown item {item!r} (not in the prepared data)")
            seen.add(item)
            counts.responses += 1
            if verdict in TAGGED:
                counts.tagged += 1
                counts.too_long += verdict == "too_long"
                kept.append((item, [str(c) for c in candidates]))
            else:
                counts.failed += 1
                failed[verdict] += 1
    cleaner.prime(normalise(i, cleaner.stopwords) for _, items in kept for i in items)
    per_item: dict[str, list[list[str]]] = {}
    for item, items in kept:
        tags = cleaner.clean(items)
        counts.no_tags_after_cleaning += not tags
        per_item.setdefault(item, []).append(tags)
    n_temps = len(raw_paths)
    counts.items_missing_temperatures = sum(len(per_item.get(i, [])) < n_temps for i in seen)
    counts.items_failed = sum(i not in per_item for i in seen)
    counts.items_without_responses = sum(i not in seen for i in splits)
    rows = [{"item_id": i, "modality": modality, "split": split, "tags": merge_ordered(per_item[i])}
            for i, split in splits.items() if i in per_item]
    return rows, counts, failed


def build_tags(cfg: CleanConfig, text_raw: Sequence[Path], video_raw: Sequence[Path],
               captions_path: Path, videos_path: Path, out_path: Path, metrics_path: Path) -> pd.DataFrame:
    """Clean and merge every raw file; write ``tags.parquet`` and the metrics JSON."""
    if not text_raw and not video_raw:
        raise ValueError("clean_tags needs at least one raw response file")
    stopwords = load_stopwords(cfg.stopwords)
    pos = load_pos_tagger(cfg.pos_model) if cfg.drop_noun_verb else None
    rows: list[dict] = []
    responses, dropped, failed = {}, {}, {}
    for modality, paths, source, id_column in (("visual", video_raw, videos_path, "video_id"),
                                                ("textual", text_raw, captions_path, "caption_id")):
        if not paths:
            continue
        cleaner = TagCleaner(cfg, stopwords, pos)
        mod_rows, counts, mod_failed = clean_modality(paths, read_splits(source, id_column), modality,
                                                      cleaner)
        rows += mod_rows
        responses[modality] = counts.as_dict()
        failed[modality] = {**mod_failed, "total": counts.failed}
        dropped[modality] = {r: cleaner.dropped[r] for r in ("empty", "too_long", "noun_verb", "duplicate")}
    table = pa.Table.from_pylist(rows, schema=TAGS_SCHEMA)
    write_parquet(table, out_path)
    tags = table.to_pandas()
    metrics = {**tag_statistics(tags), "responses": responses, "failed": failed, "dropped": dropped}
    write_json(metrics, metrics_path)
    return tags
