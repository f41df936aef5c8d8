"""Linear probes of frozen features: do frame features / caption features encode the scene facts?

python -m experiments.probe_features FEATURES_DIR [DATA_NAME]
Video side: logistic regression on the frame-mean (and late-minus-early) features of train videos,
accuracy on test videos, for background, first-shape colour/shape/motion/size, #shapes.
Text side: caption features -> the colour / motion / shape a single-shape caption states.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from experiments.common import DATA, setup
from pipeline.features.store import load_features


def main() -> None:
    from sklearn.linear_model import LogisticRegression  # sets KMP_* variables on import

    setup()
    fdir = Path(sys.argv[1])
    data = DATA / (sys.argv[2] if len(sys.argv) > 2 else "default")
    truth = json.loads((data / "prepared/synthetic_truth.json").read_text())
    store = load_features(fdir)
    vids = store.videos
    frames = np.asarray(store.frames, dtype=np.float32)
    mask = np.asarray(store.frame_mask)
    n = mask.sum(1, keepdims=True)
    mean = (frames * mask[..., None]).sum(1) / n
    half = mask.sum(1) // 2
    early = np.stack([frames[i, :half[i]].mean(0) for i in range(len(frames))])
    late = np.stack([frames[i, mask[i].sum() - half[i]:mask[i].sum()].mean(0) for i in range(len(frames))])
    X = np.concatenate([mean, late - early], 1)
    split = vids["split"].to_numpy()
    scenes = [truth[v]["scene"] for v in vids["video_id"]]
    targets = {
        "background": [s["background"] for s in scenes],
        "n_shapes": [len(s["shapes"]) for s in scenes],
        "shape0 colour": [s["shapes"][0]["colour"] for s in scenes],
        "shape0 kind": [s["shapes"][0]["shape"] for s in scenes],
        "shape0 motion": [s["shapes"][0]["motion"] for s in scenes],
        "shape0 size": [s["shapes"][0]["size_change"] for s in scenes],
    }


    def probe(X, y, tr, te):
        y = np.asarray(y)
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(X[tr], y[tr])
        base = max(np.mean(y[te] == c) for c in np.unique(y[tr]))
        return clf.score(X[tr], y[tr]), clf.score(X[te], y[te]), base


    tr, te = split == "train", split == "test"
    print(f"{fdir.name}: video probes (train acc / test acc / majority)")
    for name, y in targets.items():
        a, b, c = probe(X, y, tr, te)
        print(f"  {name:14s} {a:.2f} / {b:.2f} / {c:.2f}")
    # text side: single-shape-mention captions stating a colour / motion / shape of their shape 0
    caps = store.captions_index
    C = np.asarray(store.captions, dtype=np.float32)
    rows = []
    for i, (vid, ci) in enumerate(zip(caps["video_id"], caps["caption_index"])):
        m = truth[vid]["captions"][ci]["mentions"]
        rows.append((i, truth[vid]["scene"], m))
    for kind, field in (("colour", "colour"), ("motion", "motion"), ("shape", "shape")):
        sel = [(i, sc["shapes"][0][field]) for i, sc, m in rows if f"0.{kind}" in m and not any(x.startswith("1.") for x in m)]
        idx = np.array([i for i, _ in sel])
        y = np.array([v for _, v in sel])
        cs = caps["split"].to_numpy()[idx]
        a, b, c = probe(C[idx], y, cs == "train", cs == "test")
        print(f"  text {kind:8s} {a:.2f} / {b:.2f} / {c:.2f}  ({len(idx)} captions)")


if __name__ == "__main__":
    main()
