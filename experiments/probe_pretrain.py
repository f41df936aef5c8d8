"""Fast pretraining probe: all-fresh batches, so the training loss is a held-out loss.

python experiments/probe_pretrain.py NAME '{"lr": 3e-3, "epochs": 20}'
Prints the mean loss per 5 epochs (75 steps) and the own test R@1 at the end.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from experiments.common import DATA, log_result, tiny_config  # noqa: E402
from pipeline.backbone.build import clip_geometry  # noqa: E402
from pipeline.backbone.data import load_video_text_set  # noqa: E402
from pipeline.backbone.tiny import pretrain_tiny, retrieval_r1  # noqa: E402

name, over = sys.argv[1], json.loads(sys.argv[2])
data_name = over.pop("data", "default")
d = DATA / data_name
over.setdefault("fresh_fraction", 1.0)
over.setdefault("temporal", "delta")
cfg = tiny_config(over)
train = load_video_text_set(d / "frames", d / "prepared/captions.parquet", "train", d / "tags/tags.parquet")
test = load_video_text_set(d / "frames", d / "prepared/captions.parquet", "test")
geo = clip_geometry(d / "prepared/videos.parquet", d / "frames")
cpu = time.process_time()
model, hist = pretrain_tiny(cfg, train, progress=False, geometry=geo)
cpu = time.process_time() - cpu
losses = hist["epoch_loss"]
curve = [round(float(np.mean(losses[i:i + 5])), 3) for i in range(0, len(losses), 5)]
r_test = retrieval_r1(model, test, readout=hist["readout"])
r_train = retrieval_r1(model, train, readout=hist["readout"])
print(f"{name}: steps {hist['steps']} cpu {cpu:.0f}s scale {hist['logit_scale']:.1f} loss/75 steps {curve}")
print(f"{name}: own R@1 test t2v {100 * r_test['t2v_r1']:.1f} v2t {100 * r_test['v2t_r1']:.1f} | "
      f"train t2v {100 * r_train['t2v_r1']:.1f}")


def video_probes(model, d):
    """Logistic probes (train -> test videos) of frame-mean / late-early embeddings."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from pipeline.backbone.encode import encode_frames
    from pipeline.io import read_parquet

    truth = json.loads((d / "prepared/synthetic_truth.json").read_text())
    index = read_parquet(d / "frames/index.parquet").sort_values("row")
    frames = np.load(d / "frames/clip_frames.npy", mmap_mode="r")
    mask = np.load(d / "frames/clip_mask.npy")
    feats = []
    with torch.no_grad():
        for lo in range(0, len(frames), 20):
            x = np.asarray(frames[lo:lo + 20])
            f = encode_frames(model, x.reshape(-1, *x.shape[2:])).float().numpy().reshape(len(x), x.shape[1], -1)
            feats.append(f)
    f = np.concatenate(feats)
    X = []
    for i in range(len(f)):
        real = f[i][mask[i]]
        h = len(real) // 2
        X.append(np.concatenate([real.mean(0), real[-h:].mean(0) - real[:h].mean(0)]))
    X = np.asarray(X)
    split = index["split"].to_numpy()
    scenes = [truth[v]["scene"] for v in index["video_id"]]
    out = {}
    for key, fn in (("colour", lambda s: s["shapes"][0]["colour"]), ("kind", lambda s: s["shapes"][0]["shape"]),
                    ("motion", lambda s: s["shapes"][0]["motion"]), ("size", lambda s: s["shapes"][0]["size_change"])):
        y = np.array([fn(s) for s in scenes])
        tr, te = split == "train", split == "test"
        clf = LogisticRegression(max_iter=3000).fit(X[tr], y[tr])
        out[key] = round(float(clf.score(X[te], y[te])), 2)
    return out


probes = video_probes(model, d)
print(f"{name}: video probes (test acc; chance ~0.18 colour, 0.38 kind, 0.27 motion, 0.38 size) {probes}")
log_result({"name": name, "kind": "probe_pretrain", "probes": probes, "tiny": over, "data": data_name, "cpu_s": round(cpu),
            "loss_curve": curve, "own_test_t2v_r1": r_test["t2v_r1"], "own_test_v2t_r1": r_test["v2t_r1"],
            "own_train_t2v_r1": r_train["t2v_r1"]})
