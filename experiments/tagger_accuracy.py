"""How often the offline pixel tagger reads a scene's facts right (vs the oracle's reading).

python -m experiments.tagger_accuracy [data_name] [split]
Per fact kind: share of scenes whose tagger reading equals the truth (objects matched greedily by
colour+shape; a missing/extra object counts as wrong for all its facts).
"""
from __future__ import annotations

import json
import sys
from collections import Counter

import yaml

from experiments.common import DATA, setup
from pipeline.config import from_mapping
from pipeline.features.tag_control import scene_objects
from pipeline.io import read_parquet
from pipeline.tags.lexicon import load_lexicon
from pipeline.tags.offline_visual import OfflineVisualConfig, analyse_video


def main() -> None:
    setup()
    name = sys.argv[1] if len(sys.argv) > 1 else "default"
    split = sys.argv[2] if len(sys.argv) > 2 else "test"
    d = DATA / name
    params = yaml.safe_load((d / "params.yaml").read_text())
    cfg = from_mapping(OfflineVisualConfig, params["tag_video"]["offline"], "x")
    lex = load_lexicon(cfg.lexicon)
    truth = json.loads((d / "prepared/synthetic_truth.json").read_text())
    vlm = read_parquet(d / "frames/vlm_frames.parquet")
    print(vlm.columns.tolist())
    ok = Counter()
    n = 0
    count_ok = 0
    for vid, group in vlm.groupby("video_id"):
        if truth[vid]["split"] != split:
            continue
        group = group.sort_values("frame_index")
        jpegs = list(group["jpeg"])
        bg, objs = analyse_video(jpegs, lex, cfg)
        tbg, tobjs = scene_objects(truth[vid]["scene"], lex, cfg)
        n += 1
        ok["background"] += bg == tbg
        count_ok += len(objs) == len(tobjs)
        for t in tobjs:
            match = [o for o in objs if o.colours[0] == t.colours[0]]
            o = match[0] if match else None
            ok["colour"] += o is not None
            ok["shape"] += o is not None and o.shape == t.shape
            ok["motion"] += o is not None and o.direction == t.direction
            ok["size"] += o is not None and o.size == t.size
            ok["colour_change"] += o is not None and o.colours == t.colours
            ok["appears"] += o is not None and o.appears == t.appears
            ok["disappears"] += o is not None and o.disappears == t.disappears
            ok["objects"] += 1
    objects = ok.pop("objects")
    print(f"{n} {split} videos; object count right: {count_ok / n:.2%}; background: {ok.pop('background') / n:.2%}")
    print({k: f"{v / objects:.2%}" for k, v in ok.items()}, f"({objects} true objects)")


if __name__ == "__main__":
    main()
