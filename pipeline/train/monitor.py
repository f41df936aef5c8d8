"""Cheap per-epoch retrieval check on training pairs: R@1 (t2v and v2t) of a fixed slice.

The slice is the first caption of each of the first ``n`` training videos (distinct videos, so
the ground truth is the diagonal), with a fixed tag draw. It measures fit, not generalisation
(the evaluate stage does that on the test split), and is meant to catch a run that does not
learn. Ties count as the average rank (a degenerate constant model does not score 100 %).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.retrieval.metrics import rank_metrics, ranks_t2v, ranks_v2t
from pipeline.scoring import score_matrix
from pipeline.train.trainable import Trainable


@torch.no_grad()
def score_slice(trainable: Trainable, batch: dict[str, torch.Tensor], device: torch.device,
                chunk: int = 64) -> np.ndarray:
    """Similarity [n, n] of the slice's captions against its videos, in eval mode."""
    was_training = trainable.training
    trainable.eval()
    try:
        n = len(batch["video_index"])
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, n, chunk):  # bounded memory for CLIP encoding (finetune mode)
            piece = {k: v[start:start + chunk].to(device) for k, v in batch.items()}
            for k, v in trainable.embed(piece).items():
                if v is not None:
                    parts.setdefault(k, []).append(v)
        f = {k: torch.cat(v) for k, v in parts.items()}
        sim = score_matrix(trainable.head, f["text"], f["frames"], f["mask"], f.get("tags_v"), f.get("tags_t"))
        return sim.double().numpy()
    finally:
        trainable.train(was_training)


def slice_recall(sim: np.ndarray) -> dict[str, float]:
    """R@1 / R@5 / median rank in both directions of a square matrix with a diagonal ground truth."""
    t2v = rank_metrics(ranks_t2v(sim, ties="average"))
    v2t = rank_metrics(ranks_v2t(sim.T, ties="average"))
    return {"r1_t2v": t2v["R1"], "r5_t2v": t2v["R5"], "mdr_t2v": t2v["MdR"],
            "r1_v2t": v2t["R1"], "r5_v2t": v2t["R5"], "mdr_v2t": v2t["MdR"]}
