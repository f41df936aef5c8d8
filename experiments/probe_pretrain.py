"""Fast pretraining probe: all-fresh batches, so the training loss is a held-out loss.

python -m experiments.probe_pretrain NAME '{"lr": 3e-3, "epochs": 20}'
Prints the mean loss per 5 epochs (75 steps) and the own test R@1 at the end.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import yaml

from experiments.common import DATA, log_result, setup, text_config, tiny_config
from pipeline.backbone.data import load_video_text_set
from pipeline.backbone.pretrain_options import PretrainOptions
from pipeline.backbone.tiny import pretrain_tiny, retrieval_r1
from pipeline.frames.store import FrameStore


def video_probes(model, d):
    """Logistic probes (train -> test videos) of frame-mean / late-early embeddings."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from pipeline.io import read_parquet

    truth = json.loads((d / "prepared/synthetic_truth.json").read_text())
    index = read_parquet(d / "frames/index.parquet").sort_values("row")
    frames = np.load(d / "frames/clip_frames.npy", mmap_mode="r")
    mask = np.load(d / "frames/clip_mask.npy")
    feats = []
    with torch.no_grad():
        for lo in range(0, len(frames), 20):
            x = np.asarray(frames[lo:lo + 20])
            f = model.encode_frames(x.reshape(-1, *x.shape[2:])).numpy().reshape(len(x), x.shape[1], -1)
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


def main() -> None:
    setup()
    name, over = sys.argv[1], json.loads(sys.argv[2])
    data_name = over.pop("data", "default")
    d = DATA / data_name
    over.setdefault("fresh_fraction", 1.0)
    over.setdefault("temporal", "delta")
    cfg = tiny_config(over)
    params = yaml.safe_load((d / "params.yaml").read_text())
    max_words = text_config(params).max_words
    image_size = FrameStore(d / "frames").image_size
    options = PretrainOptions.from_files(d / "frames", tags=d / "tags/tags.parquet", videos=d / "prepared/videos.parquet")
    train = options.attach_tags(load_video_text_set(d / "frames", d / "prepared/captions.parquet", "train"))
    test = load_video_text_set(d / "frames", d / "prepared/captions.parquet", "test")
    cpu = time.process_time()
    model, hist = pretrain_tiny(cfg, train, image_size, max_words, progress=False, options=options)
    cpu = time.process_time() - cpu
    losses = hist["epoch_loss"]
    curve = [round(float(np.mean(losses[i:i + 5])), 3) for i in range(0, len(losses), 5)]
    r_test = retrieval_r1(model, test, max_words, readout=hist["readout"])
    r_train = retrieval_r1(model, train, max_words, readout=hist["readout"])
    print(f"{name}: steps {hist['steps']} cpu {cpu:.0f}s scale {hist['logit_scale']:.1f} loss/75 steps {curve}")
    print(f"{name}: own R@1 test t2v {100 * r_test['t2v_r1']:.1f} v2t {100 * r_test['v2t_r1']:.1f} | "
          f"train t2v {100 * r_train['t2v_r1']:.1f}")
    probes = video_probes(model, d)
    print(f"{name}: video probes (test acc; chance ~0.18 colour, 0.38 kind, 0.27 motion, 0.38 size) {probes}")
    log_result({"name": name, "kind": "probe_pretrain", "probes": probes, "tiny": over, "data": data_name, "cpu_s": round(cpu),
                "loss_curve": curve, "own_test_t2v_r1": r_test["t2v_r1"], "own_test_v2t_r1": r_test["v2t_r1"],
                "own_train_t2v_r1": r_train["t2v_r1"]})


if __name__ == "__main__":
    main()
