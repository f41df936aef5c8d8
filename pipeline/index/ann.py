"""Approximate (and exact) maximum-inner-product search over one vector per gallery video.

Three backends behind one small interface, so that the shortlist and its benchmark can compare
them on the same data (benchmarks/bench_search.py --compare-ann; numbers in benchmarks/README.md):

``faiss-hnsw``  faiss ``IndexHNSWFlat`` (inner product), M neighbours per node; ``ef_search``
                is raised to at least the number of candidates asked for.
``usearch``     usearch's HNSW (inner product, f32), connectivity = M.
``exact``       a blocked matrix product in PyTorch + top-k: no dependency, exact, and fast
                enough for galleries up to ~10^5 (a full scan of V x D floats per query).

The ANN libraries are imported lazily: the project imports without them, and ``exact`` always
works. Vectors are float32; scores are inner products (the shortlist stores unit vectors, so
inner product and cosine rank alike).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

AnnBackend = Literal["faiss-hnsw", "usearch", "exact"]
ANN_BACKENDS: tuple[str, ...] = ("faiss-hnsw", "usearch", "exact")


@dataclass(frozen=True)
class AnnConfig:
    """Graph parameters (HNSW backends; ``exact`` ignores them).

    m: neighbours per node (faiss M, usearch connectivity): memory and build time grow with it.
    ef_construction: candidate list while building (recall of the graph).
    ef_search: candidate list while searching; always raised to >= the candidates asked for.

    Defaults measured at 10^5 x D=512 (benchmarks/README.md): with 80 / 256 the graph lost recall
    against exact inner-product search (0.971 vs 0.994 at C=200); 200 / 1024 recovers it (0.992)
    for ~7 ms more per query and a ~3x longer build.
    """

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 1024

    def __post_init__(self) -> None:
        for name in ("m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"ann config: {name} must be >= 1, got {getattr(self, name)}")


class AnnIndex(Protocol):
    backend: str

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        """Rows [Q, count] of the best inner products, best first (-1 pads when fewer exist)."""
        ...

    def save(self, path: Path) -> None:
        ...


class ExactIndex:
    """Brute-force inner products (blocked, so memory stays bounded)."""

    backend = "exact"
    block = 65536

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        n = self.vectors.shape[0]
        count_ = min(count, n)
        best_s = torch.full((q.shape[0], 0), float("-inf"))
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
        for s in range(0, n, self.block):
            scores = q @ self.vectors[s:s + self.block].t()
            k = min(count_, scores.shape[1])
            top_s, top_i = scores.topk(k, dim=1)
            best_s, order = torch.cat([best_s, top_s], 1).topk(min(count_, best_s.shape[1] + k), dim=1)
            best_i = torch.cat([best_i, top_i + s], 1).gather(1, order)
        return _pad(best_i.numpy(), count)

    def save(self, path: Path) -> None:
        np.save(path, self.vectors.numpy())

    @classmethod
    def load(cls, path: Path) -> "ExactIndex":
        return cls(np.load(path))


class FaissHnswIndex:
    """faiss IndexHNSWFlat with the inner-product metric."""

    backend = "faiss-hnsw"

    def __init__(self, index, config: AnnConfig) -> None:
        self.index, self.config = index, config

    @classmethod
    def build(cls, vectors: np.ndarray, config: AnnConfig) -> "FaissHnswIndex":
        import faiss

        index = faiss.IndexHNSWFlat(vectors.shape[1], config.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, config)

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        self.index.hnsw.efSearch = max(self.config.ef_search, count)
        _, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
        return rows.astype(np.int64)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, config: AnnConfig) -> "FaissHnswIndex":
        import faiss

        return cls(faiss.read_index(str(path)), config)


class UsearchIndex:
    """usearch HNSW with the inner-product metric (keys = rows)."""

    backend = "usearch"

    def __init__(self, index, config: AnnConfig) -> None:
        self.index, self.config = index, config

    @staticmethod
    def _new(ndim: int, config: AnnConfig):
        from usearch.index import Index

        return Index(ndim=ndim, metric="ip", dtype="f32", connectivity=config.m,
                     expansion_add=config.ef_construction, expansion_search=config.ef_search)

    @classmethod
    def build(cls, vectors: np.ndarray, config: AnnConfig) -> "UsearchIndex":
        index = cls._new(vectors.shape[1], config)
        index.add(np.arange(len(vectors), dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32),
                  threads=torch.get_num_threads())
        return cls(index, config)

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        self.index.expansion_search = max(self.config.ef_search, count)
        matches = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count,
                                    threads=torch.get_num_threads())
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        # One query gives a Matches (its keys are the found ones), several a BatchMatches (padded).
        counts = np.asarray(getattr(matches, "counts", [keys.shape[1]])).reshape(-1)
        keys[np.arange(keys.shape[1])[None] >= counts[:, None]] = -1
        return _pad(keys, count)

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    @classmethod
    def load(cls, path: Path, config: AnnConfig, ndim: int) -> "UsearchIndex":
        index = cls._new(ndim, config)
        index.load(str(path))
        return cls(index, config)


def _pad(rows: np.ndarray, count: int) -> np.ndarray:
    if rows.shape[1] >= count:
        return rows[:, :count]
    return np.concatenate([rows, np.full((rows.shape[0], count - rows.shape[1]), -1, np.int64)], 1)


def backend_available(backend: str) -> tuple[bool, str]:
    """(True, "") when ``backend`` can be used here, else (False, why)."""
    if backend == "exact":
        return True, ""
    module = {"faiss-hnsw": "faiss", "usearch": "usearch.index"}.get(backend)
    if module is None:
        return False, f"unknown ANN backend {backend!r} (expected one of {', '.join(ANN_BACKENDS)})"
    try:
        __import__(module)
    except ImportError as err:
        return False, f"{module} is not installed ({err})"
    return True, ""


def build_ann(backend: str, vectors: np.ndarray, config: AnnConfig) -> AnnIndex:
    """Build ``backend`` over vectors [V, D'] (rows are the gallery rows)."""
    ok, why = backend_available(backend)
    if not ok:
        raise ValueError(why)
    if backend == "faiss-hnsw":
        return FaissHnswIndex.build(vectors, config)
    if backend == "usearch":
        return UsearchIndex.build(vectors, config)
    return ExactIndex(vectors)


def ann_file(backend: str) -> str:
    return {"faiss-hnsw": "ann.faiss", "usearch": "ann.usearch", "exact": "ann_vectors.npy"}[backend]


def load_ann(backend: str, path: Path, config: AnnConfig, ndim: int) -> AnnIndex:
    ok, why = backend_available(backend)
    if not ok:
        raise ValueError(f"the index was built with {backend}: {why}")
    if backend == "faiss-hnsw":
        return FaissHnswIndex.load(path, config)
    if backend == "usearch":
        return UsearchIndex.load(path, config, ndim)
    return ExactIndex.load(path)
