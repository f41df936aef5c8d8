"""Tag controls for the features stage (``features.tag_control``): is the tag pathway real?

- ``real``: the taggers' tags (the method as specified).
- ``shuffled``: every item gets the tags of another item of the same split and modality (a
  seeded derangement): same tag distribution, no information about the item. A method that
  uses tags correctly gains nothing from them.
- ``oracle``: visual tags written from the synthetic scene's true facts, in the offline visual
  tagger's vocabulary (synthetic dataset only); textual tags stay real. A working tag pathway
  must turn them into a clear gain over DiCoSA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TAG_CONTROLS = ("real", "shuffled", "oracle")
SEED = 20240601  # fixed: a control must not change with unrelated seeds


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of 0..n-1 with no fixed point (n >= 2): a random cycle order."""
    if n < 2:
        return np.arange(n)
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)  # each item takes the next one's tags in a random cycle
    return out


def shuffled(lists: list[list[str]], splits: np.ndarray, seed: int = SEED) -> list[list[str]]:
    """``lists`` re-assigned by a derangement within each split."""
    out = list(lists)
    rng = np.random.default_rng(seed)
    for split in sorted(set(splits.tolist())):
        rows = np.flatnonzero(splits == split)
        source = rows[derangement(len(rows), rng)]
        for dst, src in zip(rows, source):
            out[dst] = list(lists[src])
    return out


def apply_control(control: str, videos: pd.DataFrame, captions: pd.DataFrame, visual: list[list[str]],
                  textual: list[list[str]], prepared_dir: Path) -> tuple[list[list[str]], list[list[str]]]:
    """The (visual, textual) tag lists the features stage encodes under ``control``."""
    if control == "real":
        return visual, textual
    if control == "shuffled":
        return (shuffled(visual, videos["split"].to_numpy(dtype=str)),
                shuffled(textual, captions["split"].to_numpy(dtype=str), SEED + 1))
    if control == "oracle":
        from pipeline.features.oracle_tags import oracle_visual_tags

        return oracle_visual_tags(list(videos["video_id"]), prepared_dir), textual
    raise ValueError(f"unknown tag control {control!r} (expected one of {TAG_CONTROLS})")
