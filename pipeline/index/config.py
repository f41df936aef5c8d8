"""``params.yaml: search``: query tagging, the gallery device, and the two-stage search settings.

Read by ``macvr search`` (:mod:`pipeline.search`) and by ``macvr index`` (galleries are tagged at
the same temperatures and indexed with the same shortlist settings), so it lives in the index
package, below search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ShortlistParams:
    """Two-stage search (``params.yaml: search.shortlist``; see :mod:`pipeline.index.shortlist`).

    threshold: gallery size above which an index is searched in two stages (below: exactly).
    candidates: videos the ANN stage hands to the exact scorer per query (recall vs latency).
    embedding: the query-independent video vector (``mean`` | ``concepts``).
    backend: ``faiss-hnsw`` | ``usearch`` | ``exact`` (brute-force stage one).
    """

    threshold: int
    candidates: int
    embedding: Literal["mean", "concepts"]
    backend: str

    def __post_init__(self) -> None:
        from pipeline.index.shortlist import ShortlistConfig

        # One set of rules: the index's own config checks every value (backend names included).
        ShortlistConfig(threshold=self.threshold, candidates=self.candidates, embedding=self.embedding,
                        backend=self.backend)


@dataclass(frozen=True)
class SearchConfig:
    """``params.yaml: search``.

    temperatures: the query is tagged at each (the tag_text@tNN instances' values) and the tag
        lists merged in increasing temperature, like the clean_tags stage; ``macvr index`` tags
        a folder's videos at the same temperatures.
    cache: answer cache (SQLite) of the openai tag backend, so a repeated query asks nothing.
    device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    shortlist: the two-stage search of large galleries (:class:`ShortlistParams`).
    """

    temperatures: list[float]
    cache: str
    device: Literal["auto", "cpu", "cuda"]
    shortlist: ShortlistParams

    def shortlist_config(self):
        """The index's build settings (:class:`pipeline.index.shortlist.ShortlistConfig`)."""
        from pipeline.index.shortlist import ShortlistConfig

        s = self.shortlist
        return ShortlistConfig(threshold=s.threshold, candidates=s.candidates, embedding=s.embedding,
                               backend=s.backend)

    def __post_init__(self) -> None:
        if not self.temperatures:
            raise ValueError("search.temperatures must list at least one temperature")
        if any(not 0.0 <= t <= 2.0 for t in self.temperatures):
            raise ValueError(f"search.temperatures must lie in [0, 2], got {self.temperatures}")
        if len(set(self.temperatures)) != len(self.temperatures):
            raise ValueError(f"search.temperatures has repeats: {self.temperatures}")
        if not self.cache:
            raise ValueError("search.cache must name the tag answer cache file")
