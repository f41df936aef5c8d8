"""Issue 9: does a tag-language backbone make the tag pathway work?

python experiments/run_tagpath.py --name NAME --tiny '{"tag_visual_weight": 1}' [--backbone PATH]
    [--train '{"epochs": 30}'] [--controls real,oracle,shuffled] [--skip-heads]

Pretrains (unless --backbone), reports tag-only retrieval on the oracle features (cosine of tag
sentences, tag_retrieval.py), then DiCoSA once and MAC-VR per control with paired bootstraps of
t2v R@1 and R@5. Logs to experiments/tagpath_results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from experiments.common import (DATA, control_tags_file, features, fmt, log_result,  # noqa: E402
                                paired_bootstrap, pretrain, recall, train_eval)


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def tag_only(fdir: Path) -> dict[str, float]:
    from pipeline.evaluation.items import select_rows
    from pipeline.features.store import load_features

    store = load_features(fdir)
    rows = select_rows(store.videos, store.captions_index, 0)
    cap = unit(store.captions[rows.test_captions])
    tt = unit(store.tags_textual_infer[rows.test_captions])
    tv = unit(store.tags_visual_infer[rows.test_videos])
    frames = np.asarray(store.frames[rows.test_videos], dtype=np.float32)
    mask = np.asarray(store.frame_mask[rows.test_videos])
    fmean = unit((frames * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
    cv = rows.caption_video
    out = {}
    for key, sim in (("cap_fmean", cap @ fmean.T), ("cap_tv", cap @ tv.T), ("tt_tv", tt @ tv.T)):
        r = recall(sim, cv)
        out[f"{key}_R1"], out[f"{key}_R5"] = round(r["t2v_R1"], 1), round(r["t2v_R5"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="default")
    ap.add_argument("--name", required=True)
    ap.add_argument("--tiny", default="{}")
    ap.add_argument("--backbone", default="")
    ap.add_argument("--train", default="{}")
    ap.add_argument("--controls", default="real,oracle,shuffled")
    ap.add_argument("--skip-heads", action="store_true")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    data = DATA / args.data
    tiny = json.loads(args.tiny)
    if args.backbone:
        weights, bname = Path(args.backbone), Path(args.backbone).stem
        bmeta = {}
    else:
        weights, metrics = pretrain(data, args.name, tiny)
        bname = args.name
        r1 = metrics["r1"]
        bmeta = {"pretrain_cpu_s": metrics.get("cpu_s"), "pretrain_s": metrics.get("train_seconds"),
                 "own_test_t2v_r1": round(100 * r1["test"]["t2v_r1"], 1),
                 "own_test_v2t_r1": round(100 * r1["test"]["v2t_r1"], 1),
                 "own_train_t2v_r1": round(100 * r1["train"]["t2v_r1"], 1)}
        print(f"backbone {bname}: {bmeta}", flush=True)
    train_over = json.loads(args.train)
    base = {"name": args.name, "backbone": bname, "tiny": tiny, "train": train_over, "note": args.note}
    dicosa = None
    for control in args.controls.split(","):
        fdir, _ = features(data, weights, f"{bname}-{control}", tags=control_tags_file(data, control))
        to = tag_only(fdir)
        print(f"[{control}] tag-only: {to}", flush=True)
        log_result({**base, "kind": "tag_only", "control": control, **bmeta, **to})
        if args.skip_heads:
            continue
        if dicosa is None:
            cpu = time.process_time()
            dicosa = train_eval(fdir, "dicosa", f"{args.name}-{control}", train_over)
            dicosa["cpu_s"] = round(time.process_time() - cpu, 1)
            print(f"{fmt(dicosa)} cpu {dicosa['cpu_s']}s", flush=True)
            log_result({**base, "kind": "head", "control": control, **dicosa})
        cpu = time.process_time()
        r = train_eval(fdir, "macvr", f"{args.name}-{control}", train_over)
        r["cpu_s"] = round(time.process_time() - cpu, 1)
        print(f"[{control}] {fmt(r)} cpu {r['cpu_s']}s", flush=True)
        log_result({**base, "kind": "head", "control": control, **r})
        for k in (1, 5):
            b = paired_bootstrap(r["sim"], dicosa["sim"], dicosa["caption_video"], k=k)
            print(f"[{control}] macvr - dicosa t2v R@{k}: {b['diff']:+.1f} [{b['lo']:+.1f}, {b['hi']:+.1f}]", flush=True)
            log_result({**base, "kind": f"bootstrap_R{k}", "control": control, **b})


if __name__ == "__main__":
    main()
