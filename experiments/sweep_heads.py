"""Head-recipe sweep on one features dir (DiCoSA only unless --variants).

python -m experiments.sweep_heads FEATURES_NAME '[{"epochs": 30}, {"lr": 3e-3}]' [--variants dicosa,macvr] [--data default]
"""
from __future__ import annotations

import argparse
import json
import time

from experiments.common import DATA, fmt, log_result, paired_bootstrap, setup, train_eval


def main() -> None:
    setup()
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("configs")
    ap.add_argument("--variants", default="dicosa")
    ap.add_argument("--data", default="default")
    args = ap.parse_args()
    fdir = DATA / args.data / "features" / args.features
    for over in json.loads(args.configs):
        runs = {}
        for variant in args.variants.split(","):
            cpu = time.process_time()
            r = train_eval(fdir, variant, f"sweep-{args.features}", over)
            r["cpu_s"] = round(time.process_time() - cpu, 1)
            runs[variant] = r
            print(f"{json.dumps(over)} {fmt(r)} cpu {r['cpu_s']}s", flush=True)
            log_result({"name": "sweep", "data": args.data, "features": args.features, "train": over, **r})
        if "dicosa" in runs and "macvr" in runs:
            b = paired_bootstrap(runs["macvr"]["sim"], runs["dicosa"]["sim"], runs["dicosa"]["caption_video"])
            print(f"{json.dumps(over)} macvr - dicosa t2v R@1: {b['diff']:+.1f} [{b['lo']:+.1f}, {b['hi']:+.1f}]", flush=True)
            log_result({"name": "sweep", "kind": "bootstrap_R1", "features": args.features, "train": over, **b})


if __name__ == "__main__":
    main()
