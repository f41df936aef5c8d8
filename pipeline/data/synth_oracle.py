"""Chance and the oracle ceiling of the synthetic test split (controls reported next to the models).

The synthetic captions state only part of their scene on purpose, so even a retriever that knows
every test video's true facts cannot always single out a caption's video: several videos can be
consistent with everything a caption says. The *oracle ceiling* is the expected recall of such a
retriever that ranks the consistent items first, in uniformly random order, and the inconsistent
ones after them. It says how much room the models have; it is not a strict upper bound (a model
could also exploit how likely each video is to produce a given wording, which this oracle
ignores), but it is the natural "knows the facts, nothing more" reference.

**What a caption states** is read from the generator's own record (``synthetic_truth.json``):
each caption lists the facts it mentions (``"background"``, ``"<i>.colour"``, ``"<i>.shape"``,
``"<i>.motion"``, ``"<i>.size"``, ``"<i>.event"``), where ``i`` is the shape's slot in *its own*
scene. Captions refer to shapes by description, never by slot, so a claim is turned into values
(:func:`caption_claim`): the background name, and per mentioned shape the stated colour (its
colour at the start, which is what the captions name), kind, motion, size change and event (with
the new colour for a colour change, as in "turns blue").

**Consistency** (:func:`consistent`): a scene is consistent with a claim when its background
matches (if stated) and the claim's shapes can be assigned to *distinct* shapes of the scene
(a caption about two shapes, "a red circle moves left while another shape rises", needs two)
so that every stated value matches. Nothing unstated is assumed: "a red circle on a black
background" is consistent with a scene holding a red circle and anything else.

**t2v ceiling**: a caption consistent with ``c`` test videos (its own included) puts its video
at each of the first ``c`` ranks with probability ``1/c``: ``P(rank <= k) = min(k, c) / c``.

**v2t ceiling**: the oracle, queried with a video, knows that video's facts and ranks the test
captions whose claims are true of it (``c`` of them, including the video's own ``m``) first,
uniformly at random. The video counts as retrieved at ``k`` when any of its own captions is in
the top ``k`` (the project's multi-caption v2t convention):
``P = 1 - C(c - m, k) / C(c, k)``, the hypergeometric chance that the top ``k`` of a random order
of the ``c`` consistent captions holds at least one of the ``m``.

**Chance** is the same formulas with every item consistent (``c`` = the whole gallery).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHAPE_KINDS = ("colour", "shape", "motion", "size", "event")
DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class ShapeClaim:
    """What a caption says about one shape: ``(kind, value)`` pairs, kinds from SHAPE_KINDS."""

    values: tuple[tuple[str, str], ...]

    def holds_for(self, shape: Mapping[str, Any]) -> bool:
        return all(shape_value(shape, kind) == value for kind, value in self.values)


@dataclass(frozen=True)
class Claim:
    """Everything one caption states, as values: the background (or None) and its shapes."""

    background: str | None
    shapes: tuple[ShapeClaim, ...]


def shape_value(shape: Mapping[str, Any], kind: str) -> str:
    """The value a caption names for ``kind`` of a scene shape (a ``ShapeTrack`` as a dict).

    Colour is the colour at the start (the captions' "a red circle" names it even when the shape
    later turns blue); a colour-change event carries its new colour ("turns blue").
    """
    if kind == "colour":
        return str(shape["colour"])
    if kind == "shape":
        return str(shape["shape"])
    if kind == "motion":
        return str(shape["motion"])
    if kind == "size":
        return str(shape["size_change"])
    if kind == "event":
        event = str(shape["event"])
        return f"{event}:{shape['new_colour']}" if event == "changes_colour" else event
    raise ValueError(f"unknown shape fact kind {kind!r} (expected one of {SHAPE_KINDS})")


def caption_claim(scene: Mapping[str, Any], mentions: Iterable[str]) -> Claim:
    """The values a caption states, from its own scene and its ``mentions`` list.

    ``mentions`` uses the generator's fact names: ``"background"`` and ``"<slot>.<kind>"``.
    """
    background = None
    per_shape: dict[int, list[tuple[str, str]]] = {}
    shapes = scene["shapes"]
    for fact in mentions:
        if fact == "background":
            background = str(scene["background"])
            continue
        slot, _, kind = fact.partition(".")
        if not slot.isdigit() or kind not in SHAPE_KINDS:
            raise ValueError(f"unknown fact {fact!r} (expected 'background' or '<slot>.<kind>')")
        i = int(slot)
        if i >= len(shapes):
            raise ValueError(f"fact {fact!r} names shape {i}, but the scene has {len(shapes)}")
        per_shape.setdefault(i, []).append((kind, shape_value(shapes[i], kind)))
    claims = tuple(ShapeClaim(tuple(sorted(set(v)))) for _, v in sorted(per_shape.items()))
    return Claim(background, claims)


def consistent(scene: Mapping[str, Any], claim: Claim) -> bool:
    """Whether ``scene`` makes every part of ``claim`` true (distinct shapes per shape claim)."""
    if claim.background is not None and claim.background != scene["background"]:
        return False
    shapes = scene["shapes"]
    if len(claim.shapes) > len(shapes):
        return False
    return any(all(c.holds_for(shapes[j]) for c, j in zip(claim.shapes, slots))
               for slots in itertools.permutations(range(len(shapes)), len(claim.shapes)))


def recall_at(consistent_count: int, own: int, k: int) -> float:
    """P(at least one of ``own`` targets is in the top ``k``) when the ``consistent_count`` items
    that include them are ranked first in uniformly random order (targets are always among them).

    ``own = 1`` gives ``min(k, c) / c``.
    """
    c, m = consistent_count, own
    if not 1 <= m <= c:
        raise ValueError(f"need 1 <= own ({m}) <= consistent_count ({c})")
    if k >= c - m + 1:
        return 1.0
    return 1.0 - math.comb(c - m, k) / math.comb(c, k)


@dataclass(frozen=True)
class Ceiling:
    """Expected recall (percent) per k for t2v and v2t, plus the consistency counts behind it."""

    t2v: dict[int, float]
    v2t: dict[int, float]
    t2v_consistent: np.ndarray  # [C] consistent test videos per test caption
    v2t_consistent: np.ndarray  # [V] consistent test captions per test video

    def as_dict(self) -> dict[str, Any]:
        def stats(x: np.ndarray) -> dict[str, float]:
            return {"mean": float(x.mean()), "median": float(np.median(x)), "max": int(x.max())}

        return {"t2v": {f"R{k}": v for k, v in self.t2v.items()},
                "v2t": {f"R{k}": v for k, v in self.v2t.items()},
                "t2v_consistent_videos": stats(self.t2v_consistent),
                "v2t_consistent_captions": stats(self.v2t_consistent)}


@dataclass(frozen=True)
class SplitTruth:
    """The test split's scenes and caption claims, in a fixed order."""

    video_ids: list[str]
    scenes: list[Mapping[str, Any]]
    caption_video: np.ndarray  # [C] index into video_ids
    claims: list[Claim]


def load_truth(path: str | Path) -> dict[str, Any]:
    """``synthetic_truth.json`` as written by the prepare stage."""
    return json.loads(Path(path).read_text())


def split_truth(truth: Mapping[str, Any], split: str = "test",
                video_ids: Sequence[str] | None = None) -> SplitTruth:
    """The ``split`` videos of ``truth`` (or exactly ``video_ids``, e.g. the decoded ones)."""
    ids = sorted(v for v, rec in truth.items() if rec["split"] == split) if video_ids is None else list(video_ids)
    if not ids:
        raise ValueError(f"no {split!r} videos in the truth")
    missing = [v for v in ids if v not in truth]
    if missing:
        raise ValueError(f"videos without ground truth: {missing[:3]} ({len(missing)} in all)")
    scenes, caption_video, claims = [], [], []
    for j, vid in enumerate(ids):
        rec = truth[vid]
        scenes.append(rec["scene"])
        for cap in rec["captions"]:
            claims.append(caption_claim(rec["scene"], cap["mentions"]))
            caption_video.append(j)
    return SplitTruth(ids, scenes, np.asarray(caption_video, dtype=np.int64), claims)


def consistency_matrix(split: SplitTruth) -> np.ndarray:
    """bool [C, V]: caption claim i is true of video j. Each caption's own video must be True."""
    out = np.array([[consistent(scene, claim) for scene in split.scenes] for claim in split.claims],
                   dtype=bool).reshape(len(split.claims), len(split.scenes))
    own = out[np.arange(len(split.claims)), split.caption_video]
    if not own.all():
        bad = int(np.flatnonzero(~own)[0])
        raise ValueError(f"caption {bad} is not consistent with its own video "
                         f"{split.video_ids[split.caption_video[bad]]}: the truth file is inconsistent")
    return out


def ceiling_from_matrix(match: np.ndarray, caption_video: np.ndarray,
                        ks: Sequence[int] = DEFAULT_KS) -> Ceiling:
    """The oracle's expected recall from a consistency matrix ``match`` [C, V] (see module doc)."""
    match = np.asarray(match, dtype=bool)
    caption_video = np.asarray(caption_video, dtype=np.int64)
    per_caption = match.sum(axis=1)
    per_video = match.sum(axis=0)
    own = np.bincount(caption_video, minlength=match.shape[1])
    if (own == 0).any():
        raise ValueError("every video needs at least one caption for v2t")
    t2v = {k: 100.0 * float(np.mean([recall_at(int(c), 1, k) for c in per_caption])) for k in ks}
    v2t = {k: 100.0 * float(np.mean([recall_at(int(c), int(m), k) for c, m in zip(per_video, own)]))
           for k in ks}
    return Ceiling(t2v, v2t, per_caption, per_video)


def chance(caption_video: np.ndarray, num_videos: int, ks: Sequence[int] = DEFAULT_KS) -> Ceiling:
    """Expected recall of a random ranking (every item "consistent")."""
    caption_video = np.asarray(caption_video, dtype=np.int64)
    return ceiling_from_matrix(np.ones((len(caption_video), num_videos), dtype=bool), caption_video, ks)


def controls(truth: Mapping[str, Any], split: str = "test", video_ids: Sequence[str] | None = None,
             ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """``{"chance": ..., "oracle": ..., "counts": ...}`` for one split (recalls in percent)."""
    part = split_truth(truth, split, video_ids)
    oracle = ceiling_from_matrix(consistency_matrix(part), part.caption_video, ks)
    rand = chance(part.caption_video, len(part.video_ids), ks)
    return {"chance": {"t2v": {f"R{k}": v for k, v in rand.t2v.items()},
                       "v2t": {f"R{k}": v for k, v in rand.v2t.items()}},
            "oracle": oracle.as_dict(),
            "counts": {"videos": len(part.video_ids), "captions": len(part.claims)}}
