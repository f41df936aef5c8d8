"""Tag sentences: ``"a video of t1, t2, ..."`` from an item's ordered tag list.

Training uses R random draws of N tags per item (random order, as the official code shuffles
before joining); inference uses the first M tags. Draws are seeded per item from
``(seed, modality, item_id)``, so an item's sentences do not depend on which other items are
present or on their order.

Auxiliary captions (paper Tab. 7) take the tags' place as whole sentences: each training draw is
one of the item's captions picked at random, and inference reads the first (Appx. G: "we
randomly pick an extracted visual and textual caption ... during training. In inference, we
always pick the first caption").
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


def caption_draws(captions: Sequence[str], draws: int, seed: int, modality: str, item_id: str) -> list[str]:
    """The ``draws`` training sentences of an item's auxiliary captions: random captions, each
    used once before any repeats (so R draws over 10 captions are R distinct ones)."""
    if not len(captions):
        return [PREFIX] * draws
    rng = item_rng(seed, modality, item_id)
    order: list[int] = []
    while len(order) < draws:
        order.extend(int(i) for i in rng.permutation(len(captions)))
    return [captions[i] for i in order[:draws]]


def first_caption(captions: Sequence[str]) -> str:
    """The inference sentence of an item's auxiliary captions (the empty tag sentence if none)."""
    return captions[0] if len(captions) else PREFIX
