"""The exact probability that a scene yields a given synthetic caption (up to a per-caption factor).

:func:`~pipeline.data.synth_captions.sample_caption` draws a *plan* (``_plan``: template, which
shape slots, referring-expression levels, verb facts, background mode), blurs it until some fact
is left unsaid (``_make_partial``), then picks words (``_render``). This module enumerates every
random choice of the first two steps with its exact probability (the generator's decimal weights
as fractions), giving the distribution over *final plans* of a scene (:func:`plan_distribution`).

Words depend on a final plan only through its **signature** (:func:`signature`): the template,
the background mode and (when stated) its value, and per clause the level, the values the level
reveals (colour and/or shape kind) and the verb facts in telling order with their values
(``("motion", "left")``, ``("size", "grows")``, ``("event", "changes_colour:blue")``). Every word
pick is uniform over lists fixed by the signature (the noun drawn and then unused by a "colour"
expression changes nothing), so ``P(text | signature)`` is the same in every scene, and a
caption's text determines its signature (the grammar's phrases do not overlap; the tests check
it on sampled captions). Hence
``P(caption | scene) = P(signature | scene) * const(caption)``, where ``P(signature | scene)``
sums over every final plan of the scene with that signature: over every way the clauses map to
the scene's shape slots (:func:`signature_distribution`, cached per scene content).

Scenes are :class:`~pipeline.data.synth_scene.Scene` objects or their dicts
(``synthetic_truth.json``); only the background and each shape's colour, kind, motion, size
change, event and new colour matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from pipeline.data.synth_captions import (_NP_FACTS, BACKGROUND_MODES, BACKGROUND_WEIGHTS, NP_LEVEL_WEIGHTS,
                                          _Clause, _Plan, scene_facts, template_weights, verb_facts)
from pipeline.data.synth_scene import Scene

SHAPE_KINDS = ("colour", "shape", "motion", "size", "event")
_FIELDS = ("shape", "colour", "motion", "size_change", "event", "new_colour")

# (template, background mode, background value or "", clauses); a clause is
# (level, ((kind, value), ...) revealed by the level, ((verb fact, value), ...) in telling order).
Signature = tuple
SceneKey = tuple  # (background, ((shape, colour, motion, size_change, event, new_colour), ...))


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


def scene_key(scene: Scene | Mapping[str, Any]) -> SceneKey:
    """Everything of ``scene`` that the caption distribution depends on, hashable."""
    if isinstance(scene, Scene):
        scene = {"background": scene.background, "shapes": [vars(t) for t in scene.shapes]}
    return (str(scene["background"]), tuple(tuple(str(s[f]) for f in _FIELDS) for s in scene["shapes"]))


def _view(key: SceneKey) -> SimpleNamespace:
    """A stand-in Scene for the generator's helpers (they read only these fields)."""
    shapes = tuple(SimpleNamespace(**dict(zip(_FIELDS, s))) for s in key[1])
    return SimpleNamespace(background=key[0], shapes=shapes)


def _normalised(weights: Sequence[float]) -> list[Fraction]:
    # str() recovers the decimal written in the generator (0.45 -> 9/20), so sums are exactly 1.
    exact = [Fraction(str(w)) for w in weights]
    return [w / sum(exact) for w in exact]


def _levels(allow_vague: bool = True, second: bool = False) -> list[tuple[str, Fraction]]:
    """``_np_level``'s outcomes with their probabilities."""
    levels = ["full", "colour", "shape"] + (["other" if second else "vague"] if allow_vague else [])
    return list(zip(levels, _normalised(NP_LEVEL_WEIGHTS[: len(levels)])))


def _raw_plans(scene: SimpleNamespace) -> Iterator[tuple[_Plan, Fraction]]:
    """Every outcome of ``_plan`` (before blurring) with its probability; mirrors it branch by branch."""
    n = len(scene.shapes)
    facts = [verb_facts(t) for t in scene.shapes]
    rich = [i for i in range(n) if len(facts[i]) >= 2]
    names, weights = zip(*template_weights(scene).items())
    backgrounds = list(zip(BACKGROUND_MODES, _normalised(BACKGROUND_WEIGHTS)))
    for kind, p_kind in zip(names, _normalised(weights)):
        if p_kind == 0:
            continue
        if kind in ("presence", "presence_pair"):
            # permutation(n)[:1] is a uniform slot; [:2] of two shapes is either order.
            size = 1 if kind == "presence" else 2
            orders = list(itertools.permutations(range(n), size))
            for order in orders:
                for lv in itertools.product(_levels(allow_vague=False), repeat=size):
                    p = p_kind / len(orders) * _prod(q for _, q in lv)
                    yield _Plan(kind, [_Clause(i, lvl, []) for i, (lvl, _) in zip(order, lv)], "suffix"), p
        elif kind == "pair":
            for order in itertools.permutations(range(2)):
                first, second = _levels(), _levels(second=True)
                for (l0, q0), (l1, q1) in itertools.product(first, second):
                    for v0, v1 in itertools.product(facts[order[0]], facts[order[1]]):
                        p = p_kind / 2 * q0 * q1 / (len(facts[order[0]]) * len(facts[order[1]]))
                        yield _Plan("action", [_Clause(order[0], l0, [v0]), _Clause(order[1], l1, [v1])], ""), p
        else:
            slots = rich if kind == "two_verbs" else list(range(n))
            for i in slots:
                # two verbs: an unordered pair of distinct facts, told in telling order.
                picks = list(itertools.combinations(facts[i], 2)) if kind == "two_verbs" else [(v,) for v in facts[i]]
                for verbs, (bg, q_bg), (lvl, q_lvl) in itertools.product(picks, backgrounds, _levels()):
                    p = p_kind / len(slots) / len(picks) * q_bg * q_lvl
                    yield _Plan("action", [_Clause(i, lvl, list(verbs))], bg), p


def _prod(values) -> Fraction:
    out = Fraction(1)
    for v in values:
        out *= v
    return out


def _blurred(plan: _Plan, facts: frozenset[str], p: Fraction) -> Iterator[tuple[_Plan, Fraction]]:
    """Every outcome of ``_make_partial`` on ``plan``; mirrors its loop, one step per call."""
    if plan.mentions() != facts:
        yield plan, p
        return
    k = next((k for k, c in enumerate(plan.clauses) if c.np in ("full", "colour", "shape")), None)
    if k is None:
        yield from _blurred(_Plan(plan.template, plan.clauses, ""), facts, p)
        return
    options = ["colour", "shape"] if plan.clauses[k].np == "full" else ["vague" if k == 0 else "other"]
    for level in options:
        clauses = [_Clause(c.shape, level if j == k else c.np, c.verbs) for j, c in enumerate(plan.clauses)]
        yield from _blurred(_Plan(plan.template, clauses, plan.background), facts, p / len(options))


def plan_key(plan: Mapping[str, Any]) -> tuple:
    """A hashable form of a plan record (:meth:`~pipeline.data.synth_captions._Plan.as_dict`)."""
    return (plan["template"], plan["background"],
            tuple((int(c["shape"]), c["np"], tuple(c["verbs"])) for c in plan["clauses"]))


# Final plans depend on a scene only through each shape's verb facts (the templates on their
# counts, the blurring on the scene's fact names), a few dozen structures in all: cached by those.
_PLANS_BY_STRUCTURE: dict[tuple, dict[tuple, Fraction]] = {}


def _plan_distribution(key: SceneKey) -> dict[tuple, Fraction]:
    scene = _view(key)
    structure = tuple(tuple(verb_facts(t)) for t in scene.shapes)
    if structure not in _PLANS_BY_STRUCTURE:
        facts = scene_facts(scene)
        out: dict[tuple, Fraction] = {}
        for raw, p in _raw_plans(scene):
            for plan, q in _blurred(raw, facts, p):
                k = plan_key(plan.as_dict())
                out[k] = out.get(k, Fraction(0)) + q
        _PLANS_BY_STRUCTURE[structure] = out
    return _PLANS_BY_STRUCTURE[structure]


def plan_distribution(scene: Scene | Mapping[str, Any]) -> dict[tuple, Fraction]:
    """``{plan_key: P(final plan | scene)}`` over every final plan ``sample_caption`` can draw."""
    return dict(_plan_distribution(scene_key(scene)))


def _signature(plan: tuple, key: SceneKey, shapes: Sequence[Mapping[str, str]] | None = None) -> Signature:
    template, background, clauses = plan
    shapes = [dict(zip(_FIELDS, s)) for s in key[1]] if shapes is None else shapes
    out = []
    for slot, level, verbs in clauses:
        shape = shapes[slot]
        out.append((level, tuple((k, shape_value(shape, k)) for k in _NP_FACTS[level]),
                    tuple((v, shape_value(shape, v)) for v in verbs)))
    return (template, background, key[0] if background else "", tuple(out))


def signature(plan: Mapping[str, Any], scene: Scene | Mapping[str, Any]) -> Signature:
    """The signature of a plan record of a caption of ``scene`` (its own scene: slots refer to it)."""
    key = scene_key(scene)
    for c in plan["clauses"]:
        if not 0 <= int(c["shape"]) < len(key[1]):
            raise ValueError(f"plan clause names shape {c['shape']}, but the scene has {len(key[1])}")
    return _signature(plan_key(plan), key)


@lru_cache(maxsize=4096)
def _signature_distribution(key: SceneKey) -> dict[Signature, Fraction]:
    out: dict[Signature, Fraction] = {}
    shapes = [dict(zip(_FIELDS, s)) for s in key[1]]
    for plan, p in _plan_distribution(key).items():
        sig = _signature(plan, key, shapes)
        out[sig] = out[sig] + p if sig in out else p  # most signatures have one plan: skip 0 + p
    return out


def signature_distribution(scene: Scene | Mapping[str, Any]) -> dict[Signature, Fraction]:
    """``{signature: P(signature | scene)}``: a caption's likelihood under ``scene`` up to a
    factor that depends on the caption only."""
    return dict(_signature_distribution(scene_key(scene)))


def likelihood(sig: Signature, scene: Scene | Mapping[str, Any]) -> Fraction:
    """``P(sig | scene)`` (0 when ``scene`` cannot produce it)."""
    return _signature_distribution(scene_key(scene)).get(sig, Fraction(0))


def likelihood_rows(signatures: Sequence[Signature],
                    scenes: Sequence[Scene | Mapping[str, Any]]) -> list[list[Fraction]]:
    """``[C][V]`` exact likelihoods of each caption signature under each scene."""
    tables = [_signature_distribution(scene_key(s)) for s in scenes]
    zero = Fraction(0)
    return [[t.get(sig, zero) for t in tables] for sig in signatures]
