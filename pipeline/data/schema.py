"""The two tables every later stage reads: ``videos.parquet`` and ``captions.parquet``.

``videos``: one row per video — video_id (str, unique), path (str; absolute or relative to the
repo root), split (train/val/test), duration (float seconds), fps (float), num_frames (int),
width (int), height (int), dataset (str).

``captions``: one row per query text — caption_id (str, unique), video_id (str, a row of
``videos``), split (the video's split), caption_index (int, order within its video, 0..n-1),
text (str, non-empty). Paragraph datasets (DiDeMo, ActivityNet) have one row per video whose
text is the video's sentences joined by " ".

``validate_*`` return a copy with the canonical column order and dtypes, or raise
:class:`SchemaError` naming the column and the offending ids.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.io import read_parquet, write_parquet

SPLITS = ("train", "val", "test")

VIDEOS_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("split", pa.string()),
    ("duration", pa.float64()),
    ("fps", pa.float64()),
    ("num_frames", pa.int64()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("dataset", pa.string()),
])

CAPTIONS_SCHEMA = pa.schema([
    ("caption_id", pa.string()),
    ("video_id", pa.string()),
    ("split", pa.string()),
    ("caption_index", pa.int64()),
    ("text", pa.string()),
])


class SchemaError(ValueError):
    """A videos/captions table breaks the shared contract."""


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:5])
    return shown + (f" (and {len(values) - 5} more)" if len(values) > 5 else "")


def _check_columns(df: pd.DataFrame, schema: pa.Schema, table: str) -> None:
    expected = schema.names
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise SchemaError(f"{table}: missing column(s) {missing}; expected {expected}")
    extra = [c for c in df.columns if c not in expected]
    if extra:
        raise SchemaError(f"{table}: unexpected column(s) {extra}; expected exactly {expected}")


def _coerce(df: pd.DataFrame, schema: pa.Schema, table: str) -> pd.DataFrame:
    """Copy ``df`` in schema order, checking each column's kind and nulls before casting."""
    out = {}
    for field in schema:
        col = df[field.name].reset_index(drop=True)
        if col.isna().any():
            raise SchemaError(f"{table}.{field.name}: {int(col.isna().sum())} null value(s)")
        if pa.types.is_string(field.type):
            bad = [v for v in col if not isinstance(v, str)]
            if bad:
                raise SchemaError(f"{table}.{field.name}: expected strings, got {_examples(bad)}")
            out[field.name] = col.astype(str)
        elif pa.types.is_integer(field.type):
            # Floats are refused rather than truncated: 2.5 frames is a bug upstream.
            if not pd.api.types.is_integer_dtype(col):
                raise SchemaError(f"{table}.{field.name}: expected integers, got dtype {col.dtype}")
            out[field.name] = col.astype("int64")
        else:
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                raise SchemaError(f"{table}.{field.name}: expected numbers, got dtype {col.dtype}")
            out[field.name] = col.astype("float64")
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def _check_split(df: pd.DataFrame, table: str) -> None:
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise SchemaError(f"{table}.split: unknown split name(s) {bad}; allowed: {list(SPLITS)}")


def _check_unique(df: pd.DataFrame, column: str, table: str) -> None:
    dup = df[column][df[column].duplicated()]
    if len(dup):
        raise SchemaError(f"{table}.{column}: duplicate id(s) {_examples(dup.unique())}")


def _check_nonempty(df: pd.DataFrame, column: str, table: str, ids: str) -> None:
    empty = df[ids][df[column].str.strip() == ""]
    if len(empty):
        raise SchemaError(f"{table}.{column}: empty value for {_examples(empty)}")


def validate_videos(df: pd.DataFrame) -> pd.DataFrame:
    """Check a videos table against :data:`VIDEOS_SCHEMA` and return it canonicalised.

    Raises :class:`SchemaError` on missing/unexpected columns, nulls, wrong dtypes, empty or
    duplicate video ids, empty paths or dataset names, unknown split names, and non-positive or
    non-finite duration/fps/num_frames/width/height.
    """
    _check_columns(df, VIDEOS_SCHEMA, "videos")
    out = _coerce(df, VIDEOS_SCHEMA, "videos")
    for column in ("video_id", "path", "dataset"):
        _check_nonempty(out, column, "videos", "video_id" if column != "video_id" else column)
    _check_unique(out, "video_id", "videos")
    _check_split(out, "videos")
    for column in ("duration", "fps", "num_frames", "width", "height"):
        bad = out["video_id"][~out[column].map(lambda v: math.isfinite(v) and v > 0)]
        if len(bad):
            raise SchemaError(f"videos.{column}: must be finite and > 0, not for {_examples(bad)}")
    return out


def validate_captions(df: pd.DataFrame, videos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check a captions table against :data:`CAPTIONS_SCHEMA` and return it canonicalised.

    Raises :class:`SchemaError` on missing/unexpected columns, nulls, wrong dtypes, empty or
    duplicate caption ids, empty texts, unknown split names, negative or repeated caption_index
    within a video. With ``videos`` (an already valid videos table) it also refuses captions
    pointing to unknown videos, captions whose split differs from their video's, and videos
    without any caption (every gallery video needs a ground-truth query).
    """
    _check_columns(df, CAPTIONS_SCHEMA, "captions")
    out = _coerce(df, CAPTIONS_SCHEMA, "captions")
    _check_nonempty(out, "caption_id", "captions", "caption_id")
    _check_nonempty(out, "video_id", "captions", "caption_id")
    _check_nonempty(out, "text", "captions", "caption_id")
    _check_unique(out, "caption_id", "captions")
    _check_split(out, "captions")
    negative = out["caption_id"][out["caption_index"] < 0]
    if len(negative):
        raise SchemaError(f"captions.caption_index: negative for {_examples(negative)}")
    pairs = out[["video_id", "caption_index"]]
    repeated = pairs[pairs.duplicated()]
    if len(repeated):
        shown = _examples(f"{v}#{i}" for v, i in repeated.itertuples(index=False))
        raise SchemaError(f"captions.caption_index: repeated within a video: {shown}")
    if videos is not None:
        split_of = dict(zip(videos["video_id"], videos["split"]))
        unknown = sorted(set(out["video_id"]) - set(split_of))
        if unknown:
            raise SchemaError(f"captions.video_id: unknown video(s) {_examples(unknown)}")
        wrong = out["caption_id"][out["split"] != out["video_id"].map(split_of)]
        if len(wrong):
            raise SchemaError(f"captions.split: differs from the video's split for {_examples(wrong)}")
        uncaptioned = sorted(set(split_of) - set(out["video_id"]))
        if uncaptioned:
            raise SchemaError(f"videos without any caption: {_examples(uncaptioned)}")
    return out


def write_videos(df: pd.DataFrame, path: str | Path) -> None:
    """Validate and write ``videos.parquet`` atomically with the exact Arrow schema."""
    table = pa.Table.from_pandas(validate_videos(df), schema=VIDEOS_SCHEMA, preserve_index=False)
    write_parquet(table, path)


def write_captions(df: pd.DataFrame, path: str | Path, videos: pd.DataFrame | None = None) -> None:
    """Validate and write ``captions.parquet`` atomically with the exact Arrow schema."""
    table = pa.Table.from_pandas(validate_captions(df, videos), schema=CAPTIONS_SCHEMA,
                                 preserve_index=False)
    write_parquet(table, path)


def read_videos(path: str | Path) -> pd.DataFrame:
    """Read and validate ``videos.parquet`` (errors name the file)."""
    try:
        return validate_videos(read_parquet(path))
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None


def read_captions(path: str | Path, videos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read and validate ``captions.parquet``, cross-checked against ``videos`` if given."""
    try:
        return validate_captions(read_parquet(path), videos)
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
