"""The raw-response Parquet both backends write (``data/tags/raw/{text,video}_tNN.parquet``).

One row per item, in input order, with the answer that was kept and its verdict:

- ``verdict``: ``ok``; ``too_long`` (kept, ``candidates`` cut to ``max_tags``); or why the item
  failed: an answer verdict (``empty``, ``null``, ``refusal``, ``unparseable``, ``length``:
  every attempt gave one) or a request failure (``http_4xx``, ``retries_exhausted``).
- ``candidates``: the parsed candidate tags of a kept answer (before the paper's cleaning), null
  for a failed item; ``clean_tags`` gives failed items no tags and counts them.
- ``attempt``/``seed``: which answer was kept (0 = the item's own seed; k = the k-th re-ask), or
  the last one tried; ``response``/``finish_reason``: that answer as the server sent it (null
  when there was none); ``detail``: why a failed item failed.

Timing is deliberately not stored: identical inputs give byte-identical files (DVC hashes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.io import read_parquet, write_parquet
from pipeline.tags.parse import ANSWER_FAILURES

TAGGED = ("ok", "too_long")  # verdicts whose candidates are used
REQUEST_FAILURES = ("http_4xx", "retries_exhausted")
FAILURES = ANSWER_FAILURES + REQUEST_FAILURES
VERDICTS = TAGGED + FAILURES

RAW_SCHEMA = pa.schema([
    ("item_id", pa.string()),
    ("temperature", pa.float64()),
    ("seed", pa.int64()),
    ("attempt", pa.int64()),
    ("model", pa.string()),
    ("revision", pa.string()),
    ("prompt_hash", pa.string()),
    ("response", pa.string()),
    ("finish_reason", pa.string()),
    ("verdict", pa.string()),
    ("detail", pa.string()),
    ("candidates", pa.list_(pa.string())),
])


@dataclass(frozen=True)
class RawRow:
    """The outcome for one (item, temperature)."""

    item_id: str
    temperature: float
    seed: int
    attempt: int
    model: str
    revision: str
    prompt_hash: str
    response: str | None
    finish_reason: str
    verdict: str
    detail: str
    candidates: list[str] | None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r} for item {self.item_id!r}")
        if (self.candidates is not None) != (self.verdict in TAGGED):
            raise ValueError(f"item {self.item_id!r}: candidates must be given exactly when the "
                             f"verdict is {TAGGED}, got verdict {self.verdict!r}")

    @property
    def tagged(self) -> bool:
        return self.verdict in TAGGED


def write_raw(rows: Sequence[RawRow], path: str | Path) -> None:
    """Write rows (in the given order) atomically; refuses duplicate item ids."""
    ids = [r.item_id for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: duplicate item_id {dup!r} in raw responses")
    columns = list(zip(*(astuple(r) for r in rows))) or [[] for _ in RAW_SCHEMA.names]
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, RAW_SCHEMA)],
                                 schema=RAW_SCHEMA)
    write_parquet(table, path)


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a raw-response file, checking columns, verdicts, one temperature and unique ids."""
    df = read_parquet(path)
    missing = [c for c in RAW_SCHEMA.names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a raw tag-response file of this version (missing columns "
                         f"{missing}); rerun the tag stages (dvc repro)")
    if df["item_id"].duplicated().any():
        raise ValueError(f"{path}: duplicate item_id {df.loc[df['item_id'].duplicated(), 'item_id'].iloc[0]!r}")
    if df["temperature"].nunique() > 1:
        raise ValueError(f"{path}: holds several temperatures {sorted(df['temperature'].unique())}")
    unknown = sorted(set(df["verdict"]) - set(VERDICTS))
    if unknown:
        raise ValueError(f"{path}: unknown verdict(s) {unknown}")
    return df
