"""Pretrain a tiny CLIP variant on a dataset, then train + evaluate both heads on its features.

python -m experiments.run_backbone --data default --name delta --tiny '{"temporal": "delta"}' \
    [--train '{"epochs": 15}'] [--controls real]
"""

from __future__ import annotations

import json
import time

from experiments.common import (DATA, backbone_args, control_tags_file, features, fmt, log_result, paired_bootstrap,
                                pretrain, setup, train_eval)


def main() -> None:
    setup()
    ap = backbone_args(controls="real")
    ap.add_argument("--features", default="{}")
    ap.add_argument("--variants", default="dicosa,macvr")
    args = ap.parse_args()
    data = DATA / args.data
    tiny = json.loads(args.tiny)
    start, cpu = time.perf_counter(), time.process_time()
    weights, metrics = pretrain(data, args.name, tiny)
    r1 = metrics["r1"]
    print(f"backbone {args.name}: pretrain cpu {metrics.get('cpu_s')}s (wall now {time.perf_counter() - start:.0f}s, "
          f"cpu {time.process_time() - cpu:.0f}s); own R@1 test t2v {100 * r1['test']['t2v_r1']:.1f} "
          f"v2t {100 * r1['test']['v2t_r1']:.1f}; train t2v {100 * r1['train']['t2v_r1']:.1f}", flush=True)
    log_result({"name": args.name, "data": args.data, "kind": "backbone", "tiny": tiny, "note": args.note,
                "cpu_s": metrics.get("cpu_s"), "steps": metrics["steps"],
                "own_test_t2v_r1": r1["test"]["t2v_r1"], "own_test_v2t_r1": r1["test"]["v2t_r1"],
                "own_train_t2v_r1": r1["train"]["t2v_r1"]})
    train_over = json.loads(args.train)
    feat_over = json.loads(args.features)
    dicosa = None
    for control in args.controls.split(","):
        tags = control_tags_file(data, control)
        fdir, fsec = features(data, weights, f"{args.name}-{control}", tags=tags, overrides=feat_over)
        print(f"features {fdir.name}: {fsec:.0f}s", flush=True)
        for variant in args.variants.split(","):
            if variant == "dicosa" and dicosa is not None:
                continue
            cpu = time.process_time()
            r = train_eval(fdir, variant, f"{args.name}-{control}", train_over)
            r["cpu_s"] = round(time.process_time() - cpu, 1)
            print(f"[{control}] {fmt(r)} cpu {r['cpu_s']}s", flush=True)
            log_result({"name": args.name, "data": args.data, "backbone": str(weights), "control": control,
                        "train": train_over, "features": feat_over, "tiny": tiny, "note": args.note, **r})
            if variant == "dicosa":
                dicosa = r
            elif dicosa is not None:
                b = paired_bootstrap(r["sim"], dicosa["sim"], dicosa["caption_video"])
                print(f"[{control}] macvr - dicosa t2v R@1: {b['diff']:+.1f} [{b['lo']:+.1f}, {b['hi']:+.1f}]", flush=True)
                log_result({"name": args.name, "data": args.data, "control": control, "kind": "bootstrap_R1",
                            "train": train_over, "tiny": tiny, "note": args.note, **b})


if __name__ == "__main__":
    main()
