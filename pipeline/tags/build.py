"""Stage clean_tags: raw answers of all temperatures -> ``tags.parquet`` + tag metrics.

Each raw file holds one temperature; files are merged in increasing temperature (t07, t08,
t09, t10), so an item's tags start with its t07 tags and later temperatures only add new ones.
An answer cut by ``max_tokens`` (finish_reason "length", no final newline) loses its last,
cut-off item.
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
from pipeline.tags.parse import Parsed, parse_response
from pipeline.tags.pos import load_pos_tagger
from pipeline.tags.raw import read_raw
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
                   cleaner: TagCleaner) -> tuple[list[dict], ResponseCounts]:
    """Rows of ``tags.parquet`` for one modality, and how its raw answers looked."""
    counts = ResponseCounts()
    per_item: dict[str, list[list[str]]] = {}
    parsed_all = []
    for _, df in load_temperatures(raw_paths):
        for item, response, finish in zip(df["item_id"], df["response"], df["finish_reason"]):
            if item not in splits:
                raise ValueError(f"{modality} answer for unknown item {item!r} (not in the prepared data)")
            parsed = parse_response(response)
            if finish == "length" and parsed.items and not response.endswith("\n"):
                # max_tokens cut the answer mid-item ("- Sli"): that last item is not a tag.
                parsed = Parsed(parsed.status, parsed.items[:-1])
            counts.responses += 1
            counts.empty += parsed.status == "empty"
            counts.unparseable += parsed.status == "unparseable"
            counts.truncated += finish == "length"
            parsed_all.append((item, parsed))
    cleaner.prime(normalise(i, cleaner.stopwords) for _, p in parsed_all for i in p.items)
    for item, parsed in parsed_all:
        tags = cleaner.clean(parsed.items)
        counts.no_tags_after_cleaning += parsed.status == "ok" and not tags
        per_item.setdefault(item, []).append(tags)
    n_temps = len(raw_paths)
    counts.items_missing_temperatures = sum(len(v) < n_temps for v in per_item.values())
    counts.items_without_responses = sum(i not in per_item for i in splits)
    rows = [{"item_id": i, "modality": modality, "split": split, "tags": merge_ordered(per_item[i])}
            for i, split in splits.items() if i in per_item]
    return rows, counts


def build_tags(cfg: CleanConfig, text_raw: Sequence[Path], video_raw: Sequence[Path],
               captions_path: Path, videos_path: Path, out_path: Path, metrics_path: Path) -> pd.DataFrame:
    """Clean and merge every raw file; write ``tags.parquet`` and the metrics JSON."""
    if not text_raw and not video_raw:
        raise ValueError("clean_tags needs at least one raw response file")
    stopwords = load_stopwords(cfg.stopwords)
    pos = load_pos_tagger(cfg.pos_model) if cfg.drop_noun_verb else None
    rows: list[dict] = []
    responses, dropped = {}, {}
    for modality, paths, source, id_column in (("visual", video_raw, videos_path, "video_id"),
                                                ("textual", text_raw, captions_path, "caption_id")):
        if not paths:
            continue
        cleaner = TagCleaner(cfg, stopwords, pos)
        mod_rows, counts = clean_modality(paths, read_splits(source, id_column), modality, cleaner)
        rows += mod_rows
        responses[modality] = counts.as_dict()
        dropped[modality] = {r: cleaner.dropped[r] for r in ("empty", "too_long", "noun_verb", "duplicate")}
    table = pa.Table.from_pylist(rows, schema=TAGS_SCHEMA)
    write_parquet(table, out_path)
    tags = table.to_pandas()
    metrics = {**tag_statistics(tags), "responses": responses, "dropped": dropped}
    write_json(metrics, metrics_path)
    return tags
