"""How much a frozen backbone's tag sentences alone can retrieve: cosine of caption (or its textual
tag sentence) vs each test video's visual tag sentence, and of caption vs frame-mean features.

python experiments/tag_retrieval.py FEATURES_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from experiments.common import recall  # noqa: E402
from pipeline.evaluation.items import select_rows  # noqa: E402
from pipeline.features.store import load_features  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


for path in sys.argv[1:]:
    store = load_features(path)
    rows = select_rows(store.videos, store.captions_index, 0)
    cap = unit(store.captions[rows.test_captions])
    tt = unit(store.tags_textual_infer[rows.test_captions])
    tv = unit(store.tags_visual_infer[rows.test_videos])
    frames = np.asarray(store.frames[rows.test_videos], dtype=np.float32)
    mask = np.asarray(store.frame_mask[rows.test_videos])
    fmean = unit((frames * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
    cv = rows.caption_video
    for name, sim in (("caption . frame-mean", cap @ fmean.T), ("caption . visual tags", cap @ tv.T),
                      ("textual tags . visual tags", tt @ tv.T),
                      ("caption . (frame-mean + visual tags)", cap @ unit(fmean + tv).T)):
        r = recall(sim, cv)
        print(f"{Path(path).name:24s} {name:38s} t2v R1 {r['t2v_R1']:5.1f} R5 {r['t2v_R5']:5.1f} | v2t R1 {r['v2t_R1']:5.1f}")
