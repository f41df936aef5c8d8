"""The reader of an evaluation directory (``eval/<variant>``, written by :mod:`pipeline.evaluation.run`).

The compare stage, the report and ``macvr compare`` read per-query ranks, metrics and the
evaluated items through :class:`EvalResult`, never by re-parsing the files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.io import read_json, read_parquet
from pipeline.retrieval.uncertainty import Entries

ID_COLUMNS = {"t2v": ("caption_id", "video_id", "column"), "v2t": ("video_id", "column")}


@dataclass(frozen=True)
class EvalResult:
    """One evaluated variant: ``ranks[direction]`` tables, ``metrics`` and ``info`` (metrics.json)."""

    path: Path
    ranks: dict[str, pd.DataFrame]
    metrics: dict[str, Any]
    info: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> "EvalResult":
        path = Path(path)
        if not (path / "metrics.json").is_file():
            raise FileNotFoundError(f"{path}/metrics.json not found: run the evaluate stage for it first")
        data = read_json(path / "metrics.json")
        ranks = {d: read_parquet(path / f"ranks_{d}.parquet") for d in ID_COLUMNS}
        return cls(path=path, ranks=ranks, metrics=data["metrics"], info={k: v for k, v in data.items() if k != "metrics"})

    @property
    def variant(self) -> str:
        return str(self.info.get("variant", self.path.name))

    @property
    def ties(self) -> str:
        return str(self.info.get("evaluate", {}).get("retrieval", {}).get("ties", "optimistic"))

    def strategies(self, direction: str) -> list[str]:
        """The strategies evaluated in ``direction``, in evaluation order."""
        table = self.ranks[direction]
        return [c for c in table.columns if c not in ID_COLUMNS[direction] and not c.endswith("_tied")]

    @property
    def n_videos(self) -> int:
        return len(self.ranks["v2t"])

    def entries(self, direction: str, strategy: str) -> Entries:
        """Per-query ranks of one strategy with the video (bootstrap cluster) of each query."""
        table = self.ranks[direction]
        if strategy not in table.columns:
            raise KeyError(f"{self.path}: no {direction} ranks for strategy {strategy!r} "
                           f"(evaluated: {', '.join(self.strategies(direction))})")
        tied = table[f"{strategy}_tied"].to_numpy() if f"{strategy}_tied" in table.columns else None
        return Entries.of(table[strategy].to_numpy(), table["column"].to_numpy(np.int64), self.n_videos, tied)

    def same_queries(self, other: "EvalResult") -> bool:
        """Whether ``other`` ranked the same test queries against the same gallery (pairing)."""
        return all(self.ranks[d][list(ID_COLUMNS[d])].equals(other.ranks[d][list(ID_COLUMNS[d])])
                   for d in ID_COLUMNS)
