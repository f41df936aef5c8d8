"""Issue 9: does a tag-language backbone make the tag pathway work?

python -m experiments.run_tagpath --name NAME --tiny '{"tag_visual_weight": 1}' [--backbone PATH]
    [--train '{"epochs": 30}'] [--controls real,oracle,shuffled] [--skip-heads]

Pretrains (unless --backbone), reports tag-only retrieval on the oracle features (cosine of tag
sentences, tag_retrieval.py), then DiCoSA once and MAC-VR per control with paired bootstraps of
t2v R@1 and R@5. Logs to experiments/tagpath_results.jsonl.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.common import (DATA, backbone_args, control_tags_file, feature_similarities, features, fmt, log_result,
                                paired_bootstrap, pretrain, recall, setup, train_eval)


def tag_only(fdir: Path) -> dict[str, float]:
    """t2v R@1 / R@5 of frozen-feature cosines (no head): caption vs frame mean and vs visual tags,
    textual vs visual tags."""
    sims, cv = feature_similarities(fdir)
    out = {}
    for key in ("cap_fmean", "cap_tv", "tt_tv"):
        r = recall(sims[key], cv)
        out[f"{key}_R1"], out[f"{key}_R5"] = round(r["t2v_R1"], 1), round(r["t2v_R5"], 1)
    return out


def main() -> None:
    setup()
    ap = backbone_args(controls="real,oracle,shuffled")
    ap.add_argument("--backbone", default="")
    ap.add_argument("--skip-heads", action="store_true")
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
        bmeta = {"pretrain_cpu_s": metrics.get("cpu_s"),
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
