"""Reference points next to the models: chance, and (synthetic data) the oracle ceiling.

Chance is the expected recall of a retriever that ranks the gallery uniformly at random:
t2v R@k = min(k, V) / V; v2t, for a video with c of the C test captions, P(best rank <= k) =
1 - C(C - c, k) / C(C, k), averaged over the videos.
"""

from __future__ import annotations

from math import comb

import numpy as np

from pipeline.retrieval.metrics import RECALL_KS


def chance(caption_video: np.ndarray, n_videos: int) -> dict[str, dict[str, float]]:
    """Expected R@k (percent) of uniformly random rankings, both directions."""
    caption_video = np.asarray(caption_video, dtype=np.int64)
    n_captions = len(caption_video)
    per_video = np.bincount(caption_video, minlength=n_videos)
    t2v = {f"R{k}": 100.0 * min(k, n_videos) / n_videos for k in RECALL_KS}
    v2t = {}
    for k in RECALL_KS:
        kk = min(k, n_captions)
        miss = [comb(n_captions - c, kk) / comb(n_captions, kk) for c in per_video]
        v2t[f"R{k}"] = 100.0 * float(np.mean([1.0 - m for m in miss]))
    return {"t2v": t2v, "v2t": v2t}
