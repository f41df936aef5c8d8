"""Two-stage search over large galleries: an ANN shortlist, re-ranked by the exact MAC-VR score.

MAC-VR has no single embedding per video -- each caption pools each video's frames -- so exact
search scores every (query, video) pair. Beyond ~10^4 videos (``ShortlistConfig.threshold``) that
is too slow per query, and the shortlist replaces it:

1. Stage one (query-independent, built once): one vector per video, indexed for maximum inner
   product search (:mod:`pipeline.index.ann`). At query time the caption's vector retrieves the
   ``candidates`` best videos.
2. Stage two: the candidates are scored exactly (:func:`pipeline.scoring.pooled_scores`, the
   exact scorer for few captions x many videos) and the ``top_k`` best returned. Scores are the
   exact ones; only videos the first stage missed can be missing.

The video vector (``ShortlistConfig.embedding``) should rank videos as the exact score does.
The score is sum_k w_k cos(e_t^k, e_v^k) where e_v is the caption-weighted mean of the frames
F' (softmax at tau = 3, so close to the mean for most captions). Measured candidates (recall of
the exact top-10 within the top-C, benchmarks/README.md):
  ``mean``      unit(mean_n F'_jn) over real frames; query: the caption embedding T.
  ``concepts``  [unit(e^1(mean F')); ...; unit(e^K(mean F'))] / sqrt(K); query: the same of T:
                their inner product is the mean over concepts of cos(e_t^k, e^k(mean F')),
                the exact score with every w_k equal and the pooled video replaced by the mean.
Per-frame vectors with max-aggregation recalled slightly better at small C in the exploration
but make the index N_v times larger; not offered.

Threads: one query's re-ranking works on small tensors (C x N_v x D), where intra-op
parallelism costs more in synchronisation than it saves (C=200 at D=512: 8 ms on 1 thread,
~100 ms on 2 on a busy 2-core box): call ``search`` with ``torch.set_num_threads(1)`` and serve
concurrent queries from separate threads or processes.

The index stores what stage two needs besides the head: the encoded frames F' (the temporal
transformer runs once per video at build time, never per query), the mask and the visual tag
sentences, as .npy files that load memory-mapped, plus a fingerprint of the head it was built
with (searching with another head is refused: F' and the vectors depend on it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pipeline.index.ann import ANN_BACKENDS, AnnConfig, AnnIndex, ann_file, build_ann, load_ann
from pipeline.model.macvr import MacVR
from pipeline.scoring import DEFAULT_POOLED_VIDEO_CHUNK, pooled_scores

log = logging.getLogger(__name__)

ShortlistEmbedding = Literal["mean", "concepts"]
EMBEDDINGS: tuple[str, ...] = ("mean", "concepts")
FORMAT_VERSION = 1

#: Gallery size above which ``macvr search`` should use the shortlist: exhaustive exact search
#: costs ~0.5 M MACs per video at D=512 (``pooled_scores``), ~10 GMAC per query at 2*10^4 videos,
#: ~0.2-0.5 s on a quiet 2-core box (benchmarks/README.md: 28 s at 10^5 on the busy dev box).
DEFAULT_THRESHOLD = 20_000
#: Candidates re-scored exactly per query (recall@10 0.992 of exhaustive at 10^5 videos, D=512,
#: on bench_search's structured data, p50 16.5 ms; 100 gave 0.965).
DEFAULT_CANDIDATES = 200


@dataclass(frozen=True)
class ShortlistConfig:
    """Knobs of the two-stage search (meant for ``params.yaml: search.shortlist`` later).

    threshold: gallery size above which search goes two-stage (below it: exact, exhaustive).
    candidates: videos the first stage hands to the exact scorer per query (recall vs latency).
    embedding: the query-independent video vector (see the module docstring).
    backend: ANN library (``faiss-hnsw``, ``usearch``) or ``exact`` (brute-force inner products).
    ann: graph parameters of the HNSW backends.
    store_dtype: dtype of the stored encoded frames; float16 halves the disk and page cache but
        the exact scores are then those of the rounded features.
    """

    threshold: int = DEFAULT_THRESHOLD
    candidates: int = DEFAULT_CANDIDATES
    embedding: ShortlistEmbedding = "mean"
    backend: str = "faiss-hnsw"
    ann: AnnConfig = field(default_factory=AnnConfig)
    store_dtype: Literal["float32", "float16"] = "float32"

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"shortlist: threshold must be >= 0, got {self.threshold}")
        if self.candidates < 1:
            raise ValueError(f"shortlist: candidates must be >= 1, got {self.candidates}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"shortlist: embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.backend not in ANN_BACKENDS:
            raise ValueError(f"shortlist: backend must be one of {ANN_BACKENDS}, got {self.backend!r}")
        if self.store_dtype not in ("float32", "float16"):
            raise ValueError(f"shortlist: store_dtype must be float32 or float16, got {self.store_dtype!r}")

    @classmethod
    def from_dict(cls, raw: dict) -> "ShortlistConfig":
        raw = dict(raw)
        raw["ann"] = AnnConfig(**raw.get("ann", {}))
        return cls(**raw)


def use_shortlist(gallery_size: int, config: ShortlistConfig | None = None) -> bool:
    """Whether a gallery of this size should be searched two-stage."""
    return gallery_size > (config or ShortlistConfig()).threshold


def model_fingerprint(model: MacVR) -> str:
    """sha256 of the head's config and parameters: an index answers only for the head that built it."""
    digest = hashlib.sha256(repr(model.config).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def video_vectors(model: MacVR, encoded: torch.Tensor, mask: torch.Tensor, embedding: str) -> torch.Tensor:
    """First-stage vectors [V, D] of encoded frames F' [V, N, D] (see the module docstring)."""
    m = mask.to(encoded.dtype)[..., None]
    mean = (encoded * m).sum(1) / m.sum(1).clamp_min(1)
    if embedding == "mean":
        return _unit(mean)
    concepts = _unit(model.concept_split(mean))  # [V, K, d]
    return concepts.flatten(1) / math.sqrt(model.config.num_concepts)


@torch.no_grad()
def query_vectors(model: MacVR, text: torch.Tensor, embedding: str) -> torch.Tensor:
    """First-stage query vectors [Q, D] of caption embeddings T [Q, D]."""
    text = model.as_input(text, "text", (None, model.config.embed_dim))
    if embedding == "mean":
        return text
    return _unit(model.concept_split(text)).flatten(1) / math.sqrt(model.config.num_concepts)


def _rows(x, rows: np.ndarray) -> np.ndarray:
    """x[rows] for a numpy array or memmap, read in ascending row order (page-cache friendly)."""
    return np.asarray(x[rows])


class ShortlistIndex:
    """Stage-one ANN index + the gallery arrays stage two needs (see the module docstring)."""

    def __init__(self, config: ShortlistConfig, fingerprint: str, encoded: np.ndarray, mask: np.ndarray,
                 tags_v: np.ndarray | None, vectors: np.ndarray, ann: AnnIndex, ids: list[str] | None = None,
                 build_seconds: float = 0.0) -> None:
        self.config, self.fingerprint = config, fingerprint
        self.encoded, self.mask, self.tags_v, self.vectors, self.ann = encoded, mask, tags_v, vectors, ann
        self.ids = ids
        self.build_seconds = build_seconds
        self._checked: set[int] = set()

    def __len__(self) -> int:
        return len(self.mask)

    # ------------------------------------------------------------------ build
    @classmethod
    @torch.no_grad()
    def build(cls, model: MacVR, frames, mask, tags_v=None, *, config: ShortlistConfig | None = None,
              ids: list[str] | None = None, encoded: bool = False, block: int = 1024) -> "ShortlistIndex":
        """Index a gallery: frames [V, N, D] (CLIP frame features, or F' when ``encoded``), mask
        [V, N], tags_v [V, D] (visual tag sentences; required when the head uses them).

        Inputs may be numpy arrays or memmaps; they are read ``block`` videos at a time (the
        temporal transformer runs once per video here). The encoded frames are held in memory
        (V * N * D values in ``store_dtype``); save() writes them out.
        """
        config = config or ShortlistConfig()
        start = time.perf_counter()
        cfg = model.config
        nv, n = len(frames), frames.shape[1]
        if len(mask) != nv or (tags_v is not None and len(tags_v) != nv):
            raise ValueError(f"shortlist build: {nv} videos but mask has {len(mask)} rows"
                             + ("" if tags_v is None else f" and tags_v {len(tags_v)}"))
        if ids is not None and len(ids) != nv:
            raise ValueError(f"shortlist build: {nv} videos but {len(ids)} ids")
        if cfg.use_visual_tags and tags_v is None:
            raise ValueError("shortlist build: the head uses visual tags: tags_v is required")
        like = model.logit_scale.detach()
        store = np.float32 if config.store_dtype == "float32" else np.float16
        out = np.empty((nv, n, cfg.embed_dim), store)
        vectors = np.empty((nv, cfg.embed_dim), np.float32)
        mask_np = np.ascontiguousarray(np.asarray(mask, dtype=bool))
        for s in range(0, nv, block):
            rows = slice(s, min(s + block, nv))
            f = torch.from_numpy(np.ascontiguousarray(frames[rows])).to(like.device, like.dtype)
            mk = torch.from_numpy(mask_np[rows]).to(like.device)
            enc = f if encoded else model.encode_frames(f, mk)
            out[rows] = enc.cpu().numpy().astype(store, copy=False)
            vectors[rows] = video_vectors(model, enc, mk, config.embedding).float().cpu().numpy()
        ann = build_ann(config.backend, vectors, config.ann)
        tags = None if tags_v is None or not cfg.use_visual_tags else np.ascontiguousarray(tags_v, dtype=np.float32)
        seconds = time.perf_counter() - start
        log.info("shortlist index: %d videos, %s vectors, %s, built in %.1f s", nv, config.embedding,
                 config.backend, seconds)
        return cls(config, model_fingerprint(model), out, mask_np, tags, vectors, ann, ids, seconds)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory`` (created): meta.json, arrays as .npy, the ANN file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "encoded.npy", self.encoded)
        np.save(directory / "mask.npy", self.mask)
        np.save(directory / "vectors.npy", self.vectors)
        if self.tags_v is not None:
            np.save(directory / "tags_v.npy", self.tags_v)
        self.ann.save(directory / ann_file(self.config.backend))
        meta = {"format": FORMAT_VERSION, "config": asdict(self.config), "fingerprint": self.fingerprint,
                "videos": len(self), "frames": int(self.mask.shape[1]), "dim": int(self.vectors.shape[1]),
                "has_tags_v": self.tags_v is not None, "ids": self.ids, "build_seconds": self.build_seconds}
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> "ShortlistIndex":
        """Load an index written by save(); the large arrays are memory-mapped unless ``mmap=False``."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a shortlist index (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: index format {meta.get('format')} != {FORMAT_VERSION}; rebuild it")
        config = ShortlistConfig.from_dict(meta["config"])
        mode = "r" if mmap else None
        encoded = np.load(directory / "encoded.npy", mmap_mode=mode)
        tags_v = np.load(directory / "tags_v.npy", mmap_mode=mode) if meta["has_tags_v"] else None
        ann = load_ann(config.backend, directory / ann_file(config.backend), config.ann, meta["dim"])
        return cls(config, meta["fingerprint"], encoded, np.load(directory / "mask.npy"), tags_v,
                   np.load(directory / "vectors.npy", mmap_mode=mode), ann, meta["ids"],
                   meta.get("build_seconds", 0.0))

    # ------------------------------------------------------------------ search
    def _check_model(self, model: MacVR) -> None:
        if id(model) in self._checked:
            return
        if model_fingerprint(model) != self.fingerprint:
            raise ValueError("shortlist index: built with another head (its fingerprint differs); rebuild the "
                             "index with this checkpoint")
        self._checked.add(id(model))

    def shortlist(self, model: MacVR, text, candidates: int | None = None) -> np.ndarray:
        """Stage one: rows [Q, C] of each query's candidates, best first (-1 pads tiny galleries)."""
        c = min(candidates or self.config.candidates, len(self))
        q = query_vectors(model, torch.as_tensor(np.asarray(text)), self.config.embedding)
        return self.ann.search(q.float().cpu().numpy(), c)

    @torch.no_grad()
    def search(self, model: MacVR, text, tags_t=None, *, candidates: int | None = None, top_k: int = 10,
               video_chunk: int = DEFAULT_POOLED_VIDEO_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Two-stage search of captions text [Q, D] (+ textual tag sentences tags_t [Q, D]).

        Returns (rows [Q, k], exact scores [Q, k]), best first, k = min(top_k, gallery size);
        ``self.ids[row]`` names a video when ids were given at build time.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self._check_model(model)
        text = np.asarray(text, dtype=np.float32).reshape(-1, model.config.embed_dim)
        if model.config.use_textual_tags:
            if tags_t is None:
                raise ValueError("tags_t is required: the head uses textual tags")
            tags_t = np.asarray(tags_t, dtype=np.float32).reshape(len(text), -1)
        c = max(min(candidates or self.config.candidates, len(self)), min(top_k, len(self)))
        cand = self.shortlist(model, text, c)
        k = min(top_k, len(self))
        rows_out = np.full((len(text), k), -1, np.int64)
        scores_out = np.full((len(text), k), -np.inf, np.float32)
        for i in range(len(text)):
            rows = np.unique(cand[i][cand[i] >= 0])  # ascending: sequential reads of the arrays
            scores = self.score_rows(model, text[i:i + 1], None if tags_t is None else tags_t[i:i + 1], rows,
                                     video_chunk)[0]
            order = np.argsort(-scores, kind="stable")[:k]
            rows_out[i, :len(order)], scores_out[i, :len(order)] = rows[order], scores[order]
        return rows_out, scores_out

    @torch.no_grad()
    def score_rows(self, model: MacVR, text, tags_t, rows: np.ndarray,
                   video_chunk: int = DEFAULT_POOLED_VIDEO_CHUNK) -> np.ndarray:
        """Exact scores [Q, len(rows)] of captions against the gallery rows ``rows`` (stage two)."""
        like = model.logit_scale.detach()
        frames = torch.from_numpy(_rows(self.encoded, rows)).to(like.device, like.dtype)
        mask = torch.from_numpy(self.mask[rows]).to(like.device)
        tags_v = None if self.tags_v is None else torch.from_numpy(_rows(self.tags_v, rows))
        text_t = torch.as_tensor(np.asarray(text, dtype=np.float32))
        tags_t_t = None if tags_t is None else torch.as_tensor(np.asarray(tags_t, dtype=np.float32))
        scores = pooled_scores(model, text_t, frames, mask, tags_v, tags_t_t, video_chunk)
        return scores.float().cpu().numpy()

    @torch.no_grad()
    def exhaustive(self, model: MacVR, text, tags_t=None, *, top_k: int = 10, block: int = 4096,
                   video_chunk: int = DEFAULT_POOLED_VIDEO_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of the whole gallery (the reference the shortlist is measured against)."""
        self._check_model(model)
        text = np.asarray(text, dtype=np.float32).reshape(-1, model.config.embed_dim)
        if model.config.use_textual_tags and tags_t is None:
            raise ValueError("tags_t is required: the head uses textual tags")
        k = min(top_k, len(self))
        best_s = np.full((len(text), 0), -np.inf, np.float32)
        best_r = np.zeros((len(text), 0), np.int64)
        for s in range(0, len(self), block):
            rows = np.arange(s, min(s + block, len(self)))
            scores = self.score_rows(model, text, tags_t, rows, video_chunk)
            all_s = np.concatenate([best_s, scores], 1)
            all_r = np.concatenate([best_r, np.broadcast_to(rows, scores.shape)], 1)
            order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
            best_s, best_r = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_r, order, 1)
        return best_r, best_s
