"""Tag controls for the features stage: ``real``, ``shuffled`` and ``oracle`` tags.

MAC-VR's tag pathway is only shown to work if it helps with tags that carry information and does
not with tags that carry none. Two controls make that testable on the synthetic data:

- ``shuffled``: every item gets another item's tags (a deterministic derangement within each
  split and modality), so the tags keep their vocabulary, length and statistics but say nothing
  about the item. A gain that survives this is not from the tags' content.
- ``oracle``: visual tags written from each scene's true facts (the generator's ground truth),
  in the offline visual tagger's own vocabulary and answer format (same concept lexicon,
  salience ordering, temperature sampling and seeds), i.e. what a perfect pixel tagger would
  answer. Textual tags stay the real ones: the caption tagger already reads the caption itself.
  This is a labelled control, never a default (DESIGN.md: taggers never see the ground truth).

``real`` leaves the tags as the taggers wrote them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

# The oracle's tag writing lives with the taggers (the backbone's fresh clips use it too).
from pipeline.tags.oracle import (DEFAULT_TEMPERATURES, default_clean, oracle_answer,  # noqa: F401
                                  oracle_visual_tags, scene_objects, scene_visual_tags)

TagControl = Literal["real", "shuffled", "oracle"]
TAG_CONTROLS: tuple[str, ...] = ("real", "shuffled", "oracle")


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (Sattolo's algorithm: a uniform random n-cycle).

    ``n < 2`` has no derangement: the identity is returned (a lone item keeps its tags).
    """
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: i never stays in place
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def shuffled_tags(item_ids: Sequence[str], tags: Sequence[Sequence[str]], groups: Sequence[str],
                  seed: int, modality: str) -> list[list[str]]:
    """Each item gets the tags of another item of its group (split); deterministic.

    The permutation depends only on (seed, modality, group) and the sorted ids of the group, not
    on row order, so the same items get the same donors whatever order they come in.
    """
    if not len(item_ids) == len(tags) == len(groups):
        raise ValueError(f"item_ids, tags and groups differ in length: {len(item_ids)}, {len(tags)}, {len(groups)}")
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item_ids must be unique")
    out: list[list[str]] = [list(t) for t in tags]
    by_group: dict[str, list[int]] = {}
    for row, group in enumerate(groups):
        by_group.setdefault(str(group), []).append(row)
    for group, rows in sorted(by_group.items()):
        rows = sorted(rows, key=lambda r: item_ids[r])
        rng = np.random.default_rng([seed, _stable_int(modality), _stable_int(group)])
        perm = derangement(len(rows), rng)
        for r, donor in zip(rows, perm):
            out[r] = list(tags[rows[donor]])
    return out


def controlled_tags(control: TagControl, video_ids: Sequence[str], video_splits: Sequence[str],
                    visual: Sequence[Sequence[str]], caption_ids: Sequence[str],
                    caption_splits: Sequence[str], textual: Sequence[Sequence[str]], seed: int,
                    oracle: Callable[[Sequence[str]], list[list[str]]] | None = None,
                    ) -> tuple[list[list[str]], list[list[str]]]:
    """(visual, textual) tag lists under ``control``.

    ``shuffled`` deranges both modalities within each split; ``oracle`` replaces the visual tags
    with ``oracle(video_ids)`` (e.g. a partial of :func:`oracle_visual_tags`) and keeps the
    textual ones.
    """
    if control == "real":
        return [list(t) for t in visual], [list(t) for t in textual]
    if control == "shuffled":
        return (shuffled_tags(video_ids, visual, video_splits, seed, "visual"),
                shuffled_tags(caption_ids, textual, caption_splits, seed, "textual"))
    if control == "oracle":
        if oracle is None:
            raise ValueError("tag control 'oracle' needs the ground truth (synthetic data only)")
        tags = oracle(video_ids)
        if len(tags) != len(video_ids):
            raise ValueError(f"oracle gave {len(tags)} tag lists for {len(video_ids)} videos")
        return tags, [list(t) for t in textual]
    raise ValueError(f"unknown tag control {control!r} (expected one of {TAG_CONTROLS})")
