"""Captions for synthetic scenes: a small template grammar with synonyms.

Every caption states only PART of a scene: a scene is a set of facts (the background, and per
shape its colour, its kind, its motion, its size change and its event, the last two only when
something happens) and a caption never covers all of them. Referring expressions vary from
"a red circle" through "something red" / "a disc" to "something", and verbs from "moves left" to
"travels leftwards", so retrieval is learnable from words but not a string lookup.

A caption is drawn as a plan (template, shapes, referring-expression levels, verb facts,
background mode), blurred until it leaves something unsaid, then worded;
:func:`sample_planned_caption` also returns the final plan, from which
:mod:`pipeline.data.synth_likelihood` gives the caption's exact likelihood under any scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pipeline.data.synth_scene import Scene, ShapeTrack

SHAPE_NOUNS = {
    "circle": ("circle", "disc", "round shape", "ball"),
    "square": ("square", "box", "block", "square shape"),
    "triangle": ("triangle", "triangular shape", "wedge"),
}
MOTION_VERBS = {
    "left": ("moves left", "moves to the left", "slides to the left", "travels leftwards",
             "drifts left", "heads left"),
    "right": ("moves right", "moves to the right", "slides to the right", "travels rightwards",
              "drifts right", "heads right"),
    "up": ("moves up", "moves upwards", "rises", "floats up", "drifts upwards", "goes up"),
    "down": ("moves down", "moves downwards", "falls", "sinks", "drifts down", "goes down"),
    "static": ("stays still", "does not move", "stays in place", "remains stationary",
               "sits still"),
}
SIZE_VERBS = {
    "grows": ("grows", "gets bigger", "expands", "becomes larger", "increases in size"),
    "shrinks": ("shrinks", "gets smaller", "contracts", "becomes smaller", "decreases in size"),
}
EVENT_VERBS = {
    "appears": ("appears", "shows up", "pops up", "comes into view"),
    "disappears": ("disappears", "vanishes", "goes away", "disappears from view"),
    "changes_colour": ("turns {c}", "changes colour to {c}", "becomes {c}", "switches to {c}"),
}
WHEN = ("", "", "", " halfway through", " midway", " after a while", " later on")
VAGUE = ("something", "a shape", "an object")
OTHER = ("another shape", "another object", "something else", "a second shape")
BG_SUFFIX = (" on a {b} background", " against a {b} background", " over a {b} backdrop",
             " in front of a {b} background")
BG_LEAD = ("on a {b} background, ", "against a {b} backdrop, ", "the background is {b} and ")
PRESENCE_ONE = ("{np} on a {b} background", "there is {np} on a {b} background",
                "a {b} background with {np}", "{np} is shown against a {b} backdrop")
PRESENCE_TWO = ("{np} and {np2} on a {b} background", "a {b} scene with {np} and {np2}",
                "there are {np} and {np2} on a {b} background")
JOINS = (" while ", " as ", " and ", ", meanwhile ")

# Referring-expression levels and the facts each reveals about its shape.
_NP_FACTS = {"full": ("colour", "shape"), "colour": ("colour",), "shape": ("shape",),
             "vague": (), "other": ()}
# The generator's random choices that depend on no scene (shared with synth_likelihood, which
# enumerates them): referring-expression levels (the 4th is "vague", or "other" for a second
# shape) and how an action caption states the background.
NP_LEVEL_WEIGHTS = (0.45, 0.2, 0.2, 0.15)
BACKGROUND_MODES = ("", "suffix", "lead")
BACKGROUND_WEIGHTS = (0.7, 0.2, 0.1)


def scene_facts(scene: Scene) -> frozenset[str]:
    """Every fact of ``scene`` a caption could state, e.g. ``{"background", "0.colour", ...}``."""
    facts = {"background"}
    for i, track in enumerate(scene.shapes):
        facts |= {f"{i}.{kind}" for kind in ("colour", "shape", *verb_facts(track))}
    return frozenset(facts)


def verb_facts(track: ShapeTrack) -> list[str]:
    """What a shape does, in telling order: an appearance first, a disappearance last."""
    facts = ["motion"] + (["size"] if track.size_change != "none" else [])
    if track.event == "appears":
        return ["event", *facts]
    return facts + (["event"] if track.event != "none" else [])


@dataclass
class _Clause:
    shape: int
    np: str  # referring-expression level, a key of _NP_FACTS
    verbs: list[str]  # verb facts, subset of verb_facts(track), in telling order


@dataclass
class _Plan:
    template: str  # "action", "presence" or "presence_pair"
    clauses: list[_Clause]
    background: str  # "", "suffix" or "lead"

    def mentions(self) -> frozenset[str]:
        out = {"background"} if self.background else set()
        for c in self.clauses:
            out |= {f"{c.shape}.{k}" for k in (*_NP_FACTS[c.np], *c.verbs)}
        return frozenset(out)

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain JSON (``synthetic_truth.json``): template, background mode, and per
        clause its shape slot, referring-expression level and verb facts in telling order."""
        return {"template": self.template, "background": self.background,
                "clauses": [{"shape": c.shape, "np": c.np, "verbs": list(c.verbs)} for c in self.clauses]}


class PlannedCaption(NamedTuple):
    """A caption, the facts it states and its final plan (:meth:`_Plan.as_dict`)."""

    text: str
    mentions: frozenset[str]
    plan: dict[str, Any]


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _np_level(rng: np.random.Generator, allow_vague: bool = True, second: bool = False) -> str:
    levels = ["full", "colour", "shape"] + (["other" if second else "vague"] if allow_vague else [])
    weights = list(NP_LEVEL_WEIGHTS)[: len(levels)]
    return str(rng.choice(levels, p=np.array(weights) / sum(weights)))


def template_weights(scene: Scene) -> dict[str, float]:
    """Unnormalised template weights: two verbs need a shape that does two things ("rich"),
    pairs need two shapes. The order is the order of ``_plan``'s draw."""
    n = len(scene.shapes)
    rich = any(len(verb_facts(t)) >= 2 for t in scene.shapes)
    return {"one_verb": 0.4, "two_verbs": 0.2 if rich else 0.0, "pair": 0.2 if n == 2 else 0.0,
            "presence": 0.1, "presence_pair": 0.1 if n == 2 else 0.0}


def _plan(scene: Scene, rng: np.random.Generator) -> _Plan:
    n = len(scene.shapes)
    rich = [i for i, t in enumerate(scene.shapes) if len(verb_facts(t)) >= 2]
    templates = template_weights(scene)
    names = list(templates)
    weights = np.array([templates[k] for k in names])
    kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if kind in ("presence", "presence_pair"):
        order = [int(i) for i in rng.permutation(n)][: 1 if kind == "presence" else 2]
        return _Plan(kind, [_Clause(i, _np_level(rng, allow_vague=False), []) for i in order], "suffix")
    if kind == "pair":
        order = [int(i) for i in rng.permutation(2)]
        clauses = [_Clause(i, _np_level(rng, second=k == 1),
                           [_pick(rng, verb_facts(scene.shapes[i]))]) for k, i in enumerate(order)]
        return _Plan("action", clauses, "")
    i = int(rng.choice(rich)) if kind == "two_verbs" else int(rng.integers(n))
    facts = verb_facts(scene.shapes[i])
    if kind == "two_verbs":
        keep = sorted(int(k) for k in rng.choice(len(facts), size=2, replace=False))
        verbs = [facts[k] for k in keep]
    else:
        verbs = [_pick(rng, facts)]
    background = str(rng.choice(list(BACKGROUND_MODES), p=list(BACKGROUND_WEIGHTS)))
    return _Plan("action", [_Clause(i, _np_level(rng), verbs)], background)


def _make_partial(plan: _Plan, facts: frozenset[str], rng: np.random.Generator) -> None:
    """Blur referring expressions (then drop the background) until some fact is left unsaid.

    Presence captions never need it: they state no motion, and every shape has one.
    """
    while plan.mentions() == facts:
        clause = next((c for c in plan.clauses if c.np in ("full", "colour", "shape")), None)
        if clause is None:
            plan.background = ""
        elif clause.np == "full":
            clause.np = _pick(rng, ["colour", "shape"])
        else:
            clause.np = "vague" if clause is plan.clauses[0] else "other"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _np_text(track: ShapeTrack, level: str, rng: np.random.Generator, subject: bool = True) -> str:
    """A referring expression; ``subject=False`` avoids "something red" ("there are something")."""
    noun = _pick(rng, SHAPE_NOUNS[track.shape])
    if level == "full":
        return _article(f"{track.colour} {noun}")
    if level == "colour":
        options = [_article(f"{track.colour} shape"), _article(f"{track.colour} object")]
        return _pick(rng, options + ([f"something {track.colour}"] if subject else []))
    if level == "shape":
        return _article(noun)
    return _pick(rng, VAGUE if level == "vague" else OTHER)


def _verb_text(track: ShapeTrack, fact: str, rng: np.random.Generator, when: bool = True) -> str:
    if fact == "motion":
        return _pick(rng, MOTION_VERBS[track.motion])
    if fact == "size":
        return _pick(rng, SIZE_VERBS[track.size_change])
    verb = _pick(rng, EVENT_VERBS[track.event]).format(c=track.new_colour)
    return verb + _pick(rng, WHEN) if when else verb


def _render(plan: _Plan, scene: Scene, rng: np.random.Generator, when: bool = True) -> str:
    tracks = [scene.shapes[c.shape] for c in plan.clauses]
    subject = plan.template == "action"
    nps = [_np_text(t, c.np, rng, subject) for t, c in zip(tracks, plan.clauses)]
    bg = scene.background
    if plan.template == "presence":
        return _pick(rng, PRESENCE_ONE).format(np=nps[0], b=bg)
    if plan.template == "presence_pair":
        return _pick(rng, PRESENCE_TWO).format(np=nps[0], np2=nps[1], b=bg)
    parts = [f"{np} " + " and ".join(_verb_text(t, v, rng, when) for v in c.verbs)
             for np, t, c in zip(nps, tracks, plan.clauses)]
    text = _pick(rng, JOINS).join(parts)
    if plan.background == "suffix":
        text += _pick(rng, BG_SUFFIX).format(b=bg)
    elif plan.background == "lead":
        text = _pick(rng, BG_LEAD).format(b=bg) + text
    return text


def sample_planned_caption(scene: Scene, rng: np.random.Generator) -> PlannedCaption:
    """One caption of ``scene``, the facts it states (always a strict subset of the scene's) and
    the final plan it was rendered from (after blurring)."""
    facts = scene_facts(scene)
    plan = _plan(scene, rng)
    _make_partial(plan, facts, rng)
    return PlannedCaption(" ".join(_render(plan, scene, rng).split()), plan.mentions(), plan.as_dict())


def sample_caption(scene: Scene, rng: np.random.Generator) -> tuple[str, frozenset[str]]:
    """One caption of ``scene`` and the facts it states (always a strict subset of the scene's)."""
    text, mentions, _ = sample_planned_caption(scene, rng)
    return text, mentions


def sample_planned_captions(scene: Scene, count: int, rng: np.random.Generator,
                            max_tries: int = 50) -> list[PlannedCaption]:
    """``count`` captions of ``scene``: distinct texts, and distinct fact sets while they last.

    Preferring new fact sets spreads a video's captions over different parts of its scene.
    """
    out: list[PlannedCaption] = []
    texts: set[str] = set()
    stated: set[frozenset[str]] = set()
    for attempt in range(count * max_tries):
        caption = sample_planned_caption(scene, rng)
        fresh_facts = caption.mentions not in stated or attempt >= count * max_tries // 2
        if caption.text not in texts and fresh_facts:
            texts.add(caption.text)
            stated.add(caption.mentions)
            out.append(caption)
            if len(out) == count:
                return out
    while len(out) < count:  # tiny scenes can run out of wordings: repeats are still true
        out.append(sample_planned_caption(scene, rng))
    return out


def sample_captions(scene: Scene, count: int, rng: np.random.Generator,
                    max_tries: int = 50) -> list[tuple[str, frozenset[str]]]:
    """:func:`sample_planned_captions` without the plans (same draws)."""
    return [(c.text, c.mentions) for c in sample_planned_captions(scene, count, rng, max_tries)]


def describe_scene(scene: Scene, rng: np.random.Generator) -> tuple[str, frozenset[str]]:
    """A caption stating *every* fact of ``scene`` (each shape in full, all it does, the
    background), with the same wordings as the partial captions.

    Not used for the dataset (its captions are partial on purpose); dense captions give a
    pretraining corpus (:mod:`pipeline.backbone.stream`) a signal for every attribute at once,
    as descriptive alt-text does for a real CLIP.
    """
    order = [int(i) for i in rng.permutation(len(scene.shapes))]
    plan = _Plan("action", [_Clause(i, "full", verb_facts(scene.shapes[i])) for i in order],
                 str(rng.choice(["suffix", "lead"])))
    text = " ".join(_render(plan, scene, rng, when=False).split())  # no "later on": shorter
    return text, plan.mentions()
