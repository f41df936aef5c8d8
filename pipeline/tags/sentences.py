"""Tag sentences: ``"a video of t1, t2, ..."`` from an item's ordered tag list.

Training uses R random draws of N tags per item (random order, as the official code shuffles
before joining); inference uses the first M tags. Draws are seeded per item from
``(seed, modality, item_id)``, so an item's sentences do not depend on which other items are
present or on their order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

PREFIX = "a video of"


def tag_sentence(tags: Sequence[str]) -> str:
    """``"a video of t1, t2"``; just ``"a video of"`` for an item without tags."""
    return f"{PREFIX} {', '.join(tags)}" if len(tags) else PREFIX


def _stable_int(text: str) -> int:
    # Python's hash() is salted per process; a digest keeps draws reproducible across runs.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def item_rng(seed: int, modality: str, item_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, _stable_int(modality), _stable_int(item_id)])


def draw_tags(tags: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct tags in random order (all of them, shuffled, when fewer than ``n``)."""
    return [tags[i] for i in rng.permutation(len(tags))[:n]]


def train_sentences(tags: Sequence[str], draws: int, per_draw: int, seed: int,
                    modality: str, item_id: str) -> list[str]:
    """The ``draws`` training sentences of one item."""
    rng = item_rng(seed, modality, item_id)
    return [tag_sentence(draw_tags(tags, per_draw, rng)) for _ in range(draws)]


def infer_sentence(tags: Sequence[str], first: int) -> str:
    """The inference sentence of one item: its first ``first`` tags, in order."""
    return tag_sentence(list(tags[:first]))
