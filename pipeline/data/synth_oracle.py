"""Chance, a consistency reference and the Bayes ceiling of the synthetic test split (controls
reported next to the models).

The synthetic captions state only part of their scene on purpose, so even a retriever that knows
every test video's true facts cannot always single out a caption's video: several videos can be
consistent with everything a caption says. Three controls, all exact expectations (no sampling):

- **chance**: a uniformly random ranking.
- **consistent, uniform order** (``consistent_uniform``, a *reference, not a ceiling*): rank the
  items consistent with what the caption states first, in uniformly random order. Models can beat
  it: it ignores how likely each video is to produce the caption (a one-shape scene says "a red
  circle moves left" more often than a two-shape scene with a red circle moving left).
- **Bayes ceiling** (``bayes_ceiling``, :func:`bayes_ceiling`): the best expected recall any
  ranking can reach under the generator's own model (below). It bounds what a model can expect,
  not every draw: on one test split a model can land a little above it by luck.

**The model behind the Bayes ceiling.** Each test caption is one independent draw of
:func:`~pipeline.data.synth_captions.sample_caption` from its video's scene, and a caption's
video is a priori uniform over the test videos. (The dataset's per-video rejection of repeated
texts and fact sets in ``sample_captions``, and the fixed number of captions per video, are
ignored: each caption is treated as a fresh draw.) ``L(c, j) = P(caption c | scene j)`` is known
exactly up to a factor of ``c`` alone (:mod:`pipeline.data.synth_likelihood`, from the final plan
recorded per caption in ``synthetic_truth.json``). Then:

- **t2v**: videos are ranked by ``L(c, j)``; the posterior ``P(j | c)`` is proportional to it,
  so this ranking maximises every R@k.
- **v2t**: captions are ranked for video ``j`` by ``P(j | c) = L(c, j) / sum_l L(c, l)``. Captions
  are independent under the model, so ``P(some own caption in a set S) = 1 - prod_S (1 - P(j|c))``
  is maximised for every k by the k largest posteriors.

Ties (equal likelihoods or posteriors, compared exactly as fractions) are broken uniformly at
random and the recall is its exact expectation: with ``h`` items strictly above the best-scored
target and ``e`` tied with it, ``m`` of them targets, ``P(hit at k) = 1 - C(e - m, k - h) /
C(e, k - h)`` for ``k > h``, else 0 (:func:`tie_aware_recall`; t2v has ``m = 1``:
``clip((k - h) / e, 0, 1)``). For v2t this is exact for the project's convention (a video counts
at k when any of its own captions is in the top k): only the block of ties holding the best own
caption can decide it.

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

**t2v consistency reference**: a caption consistent with ``c`` test videos (its own included)
puts its video at each of the first ``c`` ranks with probability ``1/c``:
``P(rank <= k) = min(k, c) / c``.

**v2t consistency reference**: queried with a video, rank the test captions whose claims are
true of it (``c`` of them, including the video's own ``m``) first, uniformly at random. The
video counts as retrieved at ``k`` when any of its own captions is in the top ``k`` (the
project's multi-caption v2t convention):
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
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

# shape_value lives with the likelihood (which names values the same way); re-exported here.
from pipeline.data.synth_likelihood import SHAPE_KINDS, likelihood_rows, shape_value, signature

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
    """Expected recall (percent) per k for t2v and v2t of a consistency ranking (the uniform
    reference, or chance), plus the consistency counts behind it."""

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
    plans: list[Mapping[str, Any]] | None = None  # [C] final plans; None when the truth has none


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
    scenes, caption_video, claims, plans = [], [], [], []
    for j, vid in enumerate(ids):
        rec = truth[vid]
        scenes.append(rec["scene"])
        for cap in rec["captions"]:
            claims.append(caption_claim(rec["scene"], cap["mentions"]))
            plans.append(cap.get("plan"))  # truth files before the plans were recorded lack it
            caption_video.append(j)
    return SplitTruth(ids, scenes, np.asarray(caption_video, dtype=np.int64), claims,
                      plans if all(p is not None for p in plans) else None)


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
    """The consistency reference's expected recall from a matrix ``match`` [C, V] (see module doc)."""
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


@dataclass(frozen=True)
class BayesCeiling:
    """Expected recall (percent) per k of the Bayes-optimal rankings, and the likelihoods."""

    t2v: dict[int, float]
    v2t: dict[int, float]
    likelihood: np.ndarray  # [C, V] P(caption's signature | video's scene), as floats

    def as_dict(self) -> dict[str, Any]:
        possible = (self.likelihood > 0).sum(axis=1)
        return {"t2v": {f"R{k}": v for k, v in self.t2v.items()},
                "v2t": {f"R{k}": v for k, v in self.v2t.items()},
                "t2v_possible_videos": {"mean": float(possible.mean()), "median": float(np.median(possible)),
                                        "max": int(possible.max())}}


def tie_aware_recall(scores: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """[Q] expected P(some target in the top ``k``) per query row, items ranked by descending
    ``scores`` [Q, N] with ties in uniformly random order; ``own`` [Q, N] marks the targets (at
    least one per row). Only the tie block of the best target matters (module doc)."""
    scores, own = np.asarray(scores), np.asarray(own, dtype=bool)
    if not own.any(axis=1).all():
        raise ValueError("every query needs at least one target")
    best = np.where(own, scores, scores.min()).max(axis=1, keepdims=True)
    higher = (scores > best).sum(axis=1)
    tied = scores == best
    return np.array([recall_at(int(e), int(m), k - int(h)) if k > h else 0.0
                     for h, e, m in zip(higher, tied.sum(axis=1), (tied & own).sum(axis=1))])


def _order_codes(rows: Sequence[Sequence[Fraction]]) -> np.ndarray:
    """Integers in the same order as exact non-negative values, ties kept exactly (floats could
    split them); 0 stays 0 (most entries: skipping them keeps this fast)."""
    code = {x: i + 1 for i, x in enumerate(sorted({x for row in rows for x in row if x}))}
    return np.array([[code[x] if x else 0 for x in row] for row in rows], dtype=np.int64)


def bayes_ceiling(split: SplitTruth, ks: Sequence[int] = DEFAULT_KS) -> BayesCeiling:
    """The Bayes-optimal expected recall of ``split`` (module doc); needs the captions' plans."""
    if split.plans is None:
        raise ValueError("the truth has no caption plans (synthetic_truth.json predates them): "
                         "re-run the prepare stage")
    sigs = [signature(plan, split.scenes[j]) for plan, j in zip(split.plans, split.caption_video)]
    lik = likelihood_rows(sigs, split.scenes)
    n_cap, n_vid = len(sigs), len(split.scenes)
    own = np.zeros((n_cap, n_vid), dtype=bool)
    own[np.arange(n_cap), split.caption_video] = True
    if not all(lik[c][j] > 0 for c, j in enumerate(split.caption_video)):
        raise ValueError("a caption has zero likelihood under its own scene: the truth is inconsistent")
    totals = [sum(row) for row in lik]
    posterior = [[x / total if x else x for x in row] for row, total in zip(lik, totals)]  # P(j | c), exact
    t2v_scores, v2t_scores = _order_codes(lik), _order_codes(posterior).T
    t2v = {k: 100.0 * float(tie_aware_recall(t2v_scores, own, k).mean()) for k in ks}
    v2t = {k: 100.0 * float(tie_aware_recall(v2t_scores, own.T, k).mean()) for k in ks}
    floats = np.array([[float(x) if x else 0.0 for x in row] for row in lik]).reshape(n_cap, n_vid)
    return BayesCeiling(t2v, v2t, floats)


def controls(truth: Mapping[str, Any], split: str = "test", video_ids: Sequence[str] | None = None,
             ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """``{"chance", "consistent_uniform", "bayes_ceiling", "counts"}`` for one split (recalls in
    percent); ``bayes_ceiling`` only when the truth records the captions' plans."""
    part = split_truth(truth, split, video_ids)
    reference = ceiling_from_matrix(consistency_matrix(part), part.caption_video, ks)
    rand = chance(part.caption_video, len(part.video_ids), ks)
    out = {"chance": {"t2v": {f"R{k}": v for k, v in rand.t2v.items()},
                      "v2t": {f"R{k}": v for k, v in rand.v2t.items()}},
           "consistent_uniform": reference.as_dict(),
           "counts": {"videos": len(part.video_ids), "captions": len(part.claims)}}
    if part.plans is not None:
        out["bayes_ceiling"] = bayes_ceiling(part, ks).as_dict()
    return out
