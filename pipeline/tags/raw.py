"""The raw-response Parquet both backends write (``data/tags/raw/{text,video}_tNN.parquet``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.io import read_parquet, write_parquet

RAW_SCHEMA = pa.schema([
    ("item_id", pa.string()),
    ("temperature", pa.float64()),
    ("seed", pa.int64()),
    ("model", pa.string()),
    ("revision", pa.string()),
    ("prompt_hash", pa.string()),
    ("response", pa.string()),
    ("finish_reason", pa.string()),
    ("latency_s", pa.float64()),
])


@dataclass(frozen=True)
class RawRow:
    """One answer for one (item, temperature)."""

    item_id: str
    temperature: float
    seed: int
    model: str
    revision: str
    prompt_hash: str
    response: str
    finish_reason: str
    latency_s: float



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
    """Read a raw-response file, checking columns, one temperature and unique item ids."""
    df = read_parquet(path)
    missing = [c for c in RAW_SCHEMA.names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a raw tag-response file (missing columns {missing})")
    if df["item_id"].duplicated().any():
        raise ValueError(f"{path}: duplicate item_id {df.loc[df['item_id'].duplicated(), 'item_id'].iloc[0]!r}")
    if df["temperature"].nunique() > 1:
        raise ValueError(f"{path}: holds several temperatures {sorted(df['temperature'].unique())}")
    df["response"] = df["response"].fillna("")
    return df
