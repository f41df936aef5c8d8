"""How much a frozen backbone's tag sentences alone can retrieve: cosine of caption (or its textual
tag sentence) vs each test video's visual tag sentence, and of caption vs frame-mean features.

python -m experiments.tag_retrieval FEATURES_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

from experiments.common import feature_similarities, recall, setup

LABELS = {"cap_fmean": "caption . frame-mean", "cap_tv": "caption . visual tags",
          "tt_tv": "textual tags . visual tags", "cap_fmean_tv": "caption . (frame-mean + visual tags)"}


def main() -> None:
    setup()
    for path in sys.argv[1:]:
        sims, cv = feature_similarities(Path(path))
        for key, name in LABELS.items():
            r = recall(sims[key], cv)
            print(f"{Path(path).name:24s} {name:38s} t2v R1 {r['t2v_R1']:5.1f} R5 {r['t2v_R5']:5.1f} | v2t R1 {r['v2t_R1']:5.1f}")


if __name__ == "__main__":
    main()
