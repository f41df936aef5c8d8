"""Typed configuration of the ``evaluate`` stage (``params.yaml: evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.retrieval import RetrievalConfig
from pipeline.retrieval.uncertainty import BootstrapConfig

__all__ = ["BootstrapConfig", "EvaluateConfig"]


@dataclass(frozen=True)
class EvaluateConfig:
    """How a trained head is scored on the test split.

    retrieval: tie policy and the registered strategies to evaluate with their knobs
        (see :mod:`pipeline.retrieval`).
    bootstrap: how the metrics' intervals are drawn (:mod:`pipeline.retrieval.uncertainty`).
    device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    torch_threads: intra-op CPU threads (``torch.set_num_threads``); 0 leaves PyTorch's default.
    method: ``fast`` (the exact split-algebra scorer), ``fused`` (the same algebra with its hidden
        layer in one compiled kernel: faster, same numbers; falls back to ``fast`` where the
        kernel is unavailable) or ``direct`` (every pair through the full confidence MLP; ~10x
        slower, same numbers: a cross-check).
    text_chunk, video_chunk: tile of the fast scorer's hidden layer (keep it cache-sized).
    text_block, video_block: captions / videos prepared at once; they bound the memory,
        whatever the gallery size.
    querybank_size: training videos used for the QB-Norm querybanks, the first ones in the
        features' row order (0 = every training video). The t2v querybank is the first caption
        of each of them, the v2t querybank the videos themselves.
    encode_batch_size: frames or texts per CLIP forward when a finetune-mode checkpoint needs
        the test and querybank items re-encoded by its own CLIP (unused in cached mode).
    top_k: videos listed per test caption and strategy in ``top_t2v.parquet`` (the report's
        qualitative examples read them).
    recall_ks: the K values of the recall@K curves (DVC plots and PNGs).
    plot_dpi: resolution of the PNG plots.
    """

    retrieval: RetrievalConfig
    bootstrap: BootstrapConfig
    device: Literal["auto", "cpu", "cuda"]
    torch_threads: int
    method: Literal["fast", "fused", "direct"]
    text_chunk: int
    video_chunk: int
    text_block: int
    video_block: int
    querybank_size: int
    encode_batch_size: int
    top_k: int
    recall_ks: list[int]
    plot_dpi: int

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"evaluate config: {msg}")

        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        need(self.method in ("fast", "fused", "direct"), f"method must be fast, fused or direct, got {self.method!r}")
        need(self.torch_threads >= 0, f"torch_threads must be >= 0 (0 = PyTorch's default), got {self.torch_threads}")
        for name in ("text_chunk", "video_chunk", "text_block", "video_block", "encode_batch_size", "top_k",
                     "plot_dpi"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.querybank_size >= 0, f"querybank_size must be >= 0 (0 = all training videos), "
                                       f"got {self.querybank_size}")
        ks = list(self.recall_ks)
        need(len(ks) > 0 and all(k >= 1 for k in ks), f"recall_ks must be a non-empty list of integers >= 1, got {ks}")
        need(ks == sorted(set(ks)), f"recall_ks must be strictly increasing, got {ks}")
