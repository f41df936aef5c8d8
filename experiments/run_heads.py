"""Train + evaluate heads on one dataset/backbone, with tag controls, and log the results.

python -m experiments.run_heads --data default --backbone models/backbone.pt --name base \
    --controls real,oracle,shuffled --train '{"epochs": 15}'

For each control: features (tags replaced per the control), then dicosa once (it ignores tags)
and macvr per control; prints t2v/v2t R@1/R@5 and the paired bootstrap of macvr - dicosa t2v R@1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments.common import (DATA, ROOT, control_tags_file, features, fmt, log_result, paired_bootstrap,
                                setup, train_eval)


def main() -> None:
    setup()
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="default")
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--controls", default="real")
    ap.add_argument("--variants", default="dicosa,macvr")
    ap.add_argument("--train", default="{}", help="JSON overrides of params train.* (dotted keys)")
    ap.add_argument("--features", default="{}", help="JSON overrides of params features.*")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    data = DATA / args.data
    backbone = Path(args.backbone)
    if not backbone.is_absolute():
        backbone = ROOT / backbone
    train_over = json.loads(args.train)
    feat_over = json.loads(args.features)
    results = {}
    dicosa = None
    for control in args.controls.split(","):
        tags = control_tags_file(data, control)
        fname = f"{backbone.stem}-{control}" + ("-" + "-".join(f"{k}{v}" for k, v in feat_over.items()) if feat_over else "")
        fdir, fsec = features(data, backbone, fname, tags=tags, overrides=feat_over)
        for variant in args.variants.split(","):
            if variant == "dicosa" and dicosa is not None:
                continue  # tags do not enter DiCoSA: one run serves every control
            start = time.process_time()
            r = train_eval(fdir, variant, f"{args.name}-{control}", train_over)
            r["cpu_s"] = round(time.process_time() - start, 1)
            print(f"[{control}] {fmt(r)} cpu {r['cpu_s']}s", flush=True)
            if variant == "dicosa":
                dicosa = r
            results[(control, variant)] = r
            log_result({"name": args.name, "data": args.data, "backbone": str(backbone), "control": control,
                        "train": train_over, "features": feat_over, "note": args.note, **r})
        if dicosa is not None and (control, "macvr") in results:
            m = results[(control, "macvr")]
            for k in (1, 5):
                b = paired_bootstrap(m["sim"], dicosa["sim"], dicosa["caption_video"], k=k)
                print(f"[{control}] macvr - dicosa t2v R@{k}: {b['diff']:+.1f} [{b['lo']:+.1f}, {b['hi']:+.1f}]")
                log_result({"name": args.name, "data": args.data, "control": control, "kind": f"bootstrap_R{k}",
                            "train": train_over, "note": args.note, **b})


if __name__ == "__main__":
    main()
