"""Stage ``clean_captions``: raw caption answers -> each item's ordered auxiliary captions.

Per item, in answer order: normalise each candidate sentence (whitespace, surrounding quotes,
a final full stop; case is kept, the text tower lower-cases); drop sentences shorter than
``min_words`` or longer than ``max_words`` words, implausible ones (markup, noise: the judge's
rule), and duplicates (ignoring case and punctuation); drop a paraphrase that only restates its
own caption verbatim (``drop_copies``); keep the first ``max_captions``. Appx. G applies no
anti-hallucination rule to captions, and neither does this stage.

The table (``data/aux/captions.parquet``) has the layout of ``tags.parquet`` with ``captions``
in place of ``tags``; it is read back as a :class:`pipeline.tags.table.TagTable`, so the
features stage handles both inputs alike. A modality that reads its tags has no rows.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.aux_captions.config import CleanCaptionsConfig
from pipeline.aux_captions.judge import plausible_sentence, strip_sentence
from pipeline.io import read_parquet, write_json, write_parquet
from pipeline.tags.raw import FAILURES, TAGGED, read_raw
from pipeline.tags.table import TagTable, table_of_lists

CAPTIONS_SCHEMA = pa.schema([("item_id", pa.string()), ("modality", pa.string()),
                             ("split", pa.string()), ("captions", pa.list_(pa.string()))])
DROP_REASONS = ("too_short", "too_long", "implausible", "duplicate", "copy")
_KEY = re.compile(r"[^\w]+")


def normalise_sentence(text: str) -> str:
    return strip_sentence(text).rstrip(".").strip()


def sentence_key(text: str) -> str:
    """What two sentences must share to count as the same (case and punctuation ignored)."""
    return " ".join(_KEY.sub(" ", text.lower()).split())


def clean_item(candidates: list[str], cfg: CleanCaptionsConfig, original: str | None,
               dropped: Counter) -> list[str]:
    """One item's kept captions (``original``: its own caption, for ``drop_copies``)."""
    out: list[str] = []
    seen = {sentence_key(original)} if cfg.drop_copies and original is not None else set()
    for raw in candidates:
        text = normalise_sentence(raw)
        words = len(text.split())
        reason = ("too_short" if words < cfg.min_words else "too_long" if words > cfg.max_words
                  else "implausible" if not plausible_sentence(text) else None)
        key = sentence_key(text)
        if reason is None and key in seen:
            reason = "copy" if original is not None and key == sentence_key(original) else "duplicate"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(key)
        out.append(text)
    return out[: cfg.max_captions]


def _modality(raw_path: Path, modality: str, splits: dict[str, str], originals: dict[str, str] | None,
              cfg: CleanCaptionsConfig) -> tuple[list[dict], dict]:
    df = read_raw(raw_path)
    unknown = sorted(set(df["item_id"].astype(str)) - set(splits))
    if unknown:
        raise ValueError(f"{raw_path}: item {unknown[0]!r} is not in the prepared data "
                         f"({len(unknown)} unknown); rerun the caption stages (dvc repro)")
    dropped: Counter = Counter()
    failed = Counter(v for v in df["verdict"] if v in FAILURES)
    by_id = {str(i): (v, c) for i, v, c in zip(df["item_id"], df["verdict"], df["candidates"])}
    rows, counts = [], []
    for item, split in splits.items():  # prepared order
        if item not in by_id or by_id[item][0] not in TAGGED:
            continue  # no kept answer: no row (the model gets the empty sentence)
        kept = clean_item(list(by_id[item][1]), cfg, originals.get(item) if originals else None, dropped)
        rows.append({"item_id": item, "modality": modality, "split": split, "captions": kept})
        counts.append(len(kept))
    n = len(splits)
    metrics = {"items": n, "answered": len(rows), "failed": dict(sorted(failed.items())),
               "without_captions": n - sum(c > 0 for c in counts),
               "mean_captions": round(sum(counts) / len(counts), 3) if counts else 0.0,
               "mean_words": _mean_words(rows), "dropped": {r: dropped[r] for r in DROP_REASONS}}
    return rows, metrics


def _mean_words(rows: list[dict]) -> float:
    words = [len(c.split()) for r in rows for c in r["captions"]]
    return round(sum(words) / len(words), 3) if words else 0.0


def clean_captions(cfg: CleanCaptionsConfig, visual: str, textual: str, visual_raw: Path, textual_raw: Path,
                   captions_path: Path, videos_path: Path, out: Path, metrics_path: Path) -> dict:
    """Write ``captions.parquet`` and its metrics. ``visual`` / ``textual``: what each modality
    reads (``features.auxiliary``); a modality reading its tags (``tags``) gets no rows."""
    videos = read_parquet(videos_path, columns=["video_id", "split"])
    caps = read_parquet(captions_path, columns=["caption_id", "split", "text"])
    rows: list[dict] = []
    metrics: dict = {"auxiliary": {"visual": visual, "textual": textual}}
    if visual == "captions":
        part, metrics["visual"] = _modality(visual_raw, "visual", dict(zip(videos["video_id"].astype(str),
                                                                          videos["split"].astype(str))), None, cfg)
        rows += part
    if textual == "captions":
        ids = caps["caption_id"].astype(str)
        part, metrics["textual"] = _modality(textual_raw, "textual", dict(zip(ids, caps["split"].astype(str))),
                                             dict(zip(ids, caps["text"].astype(str))), cfg)
        rows += part
    table = pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA)
    write_parquet(table, out)
    write_json(metrics, metrics_path)
    return metrics


def read_captions_table(path: str | Path) -> TagTable:
    """``captions.parquet`` as a :class:`TagTable` (ordered caption lists per item and modality)."""
    return table_of_lists(read_parquet(path, columns=list(CAPTIONS_SCHEMA.names)), path, column="captions")
