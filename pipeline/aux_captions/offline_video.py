"""Offline visual captioner: caption sentences from the pixel analysis of the offline visual
tagger (:func:`pipeline.tags.offline_visual.analyse_video`), in its own wording.

Each caption names one object (sometimes a second), by colour and shape, and one or two things
it does (moves in a direction, grows or shrinks, changes colour, appears, disappears, stays
still), sometimes with the background. Like a VLM asked for 10 captions, low temperatures keep
to the most salient object and fact in the plainest words; higher ones vary more. A still view
(``input: middle_frame``, the BLIP-2 protocol) sees no motion, so its captions only say what is
there, as an image captioner would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.aux_captions.config import OfflineCaptionerConfig
from pipeline.aux_captions.judge import fix_articles
from pipeline.tags.offline_visual import ObjectEvents
from pipeline.tags.sampling import bullet_list

MOVES = {
    "leftward": ("moves to the left", "travels left", "slides to the left", "heads left"),
    "rightward": ("moves to the right", "travels right", "slides to the right", "heads right"),
    "upward": ("moves up", "rises", "travels upwards", "floats up"),
    "downward": ("moves down", "falls", "travels downwards", "sinks"),
}
STILL = ("stays still", "does not move", "remains in place")
SIZES = {"growth": ("grows", "gets larger", "expands"),
         "shrinking": ("shrinks", "gets smaller", "contracts")}
APPEARS = ("appears", "comes into view")
DISAPPEARS = ("disappears", "leaves the scene")
RECOLOURS = ("turns {c}", "changes colour to {c}")
SCENES = ("on a {b} background", "against a {b} backdrop", "in front of a {b} background")
STILL_LEADS = ("{np}", "a picture of {np}", "an image of {np}", "{np} in the frame")
MAX_TRIES = 20  # per caption asked for, before settling for fewer distinct ones


def _pick(options: Sequence[str], t: float, rng: np.random.Generator) -> str:
    """The first (plainest) option at low temperature, the others more often as T rises."""
    logits = -np.arange(len(options), dtype=np.float64) * 1.5 / max(t, 1e-3)
    p = np.exp(logits - logits.max())
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _noun_phrase(obj: ObjectEvents, t: float, rng: np.random.Generator) -> str:
    colour, shape = obj.colours[0], obj.shape
    return _pick((f"a {colour} {shape}", f"a {shape}", f"a {colour} shape"), t, rng)


def _facts(obj: ObjectEvents) -> list[tuple[str, ...]]:
    """The verb phrases of what an object does, most telling first."""
    out: list[tuple[str, ...]] = [MOVES[obj.direction] if obj.direction else STILL]
    if obj.size:
        out.append(SIZES[obj.size])
    if len(obj.colours) > 1:
        out.append(tuple(r.format(c=obj.colours[1]) for r in RECOLOURS))
    if obj.appears:
        out.append(APPEARS)
    if obj.disappears:
        out.append(DISAPPEARS)
    return out


def _clause(obj: ObjectEvents, still_view: bool, cfg: OfflineCaptionerConfig, t: float,
            rng: np.random.Generator) -> str:
    noun = _noun_phrase(obj, t, rng)
    if still_view:
        return noun
    facts = _facts(obj)
    keys = -np.arange(len(facts)) + t * rng.gumbel(size=len(facts))  # salient first, noisier with T
    chosen = [facts[int(i)] for i in np.argsort(-keys)[: cfg.facts_per_caption]]
    count = 1 + int(rng.integers(0, len(chosen))) if t > 0 else 1
    return f"{noun} {' and '.join(_pick(f, t, rng) for f in chosen[:count])}"


def caption_once(background: str, objects: Sequence[ObjectEvents], still_view: bool,
                 cfg: OfflineCaptionerConfig, t: float, rng: np.random.Generator) -> str:
    """One caption of a video (or of its middle frame when ``still_view``)."""
    scene = _pick(SCENES, t, rng).format(b=background)
    if not objects:
        return f"an empty {background} background" if still_view else f"a plain {background} background with nothing moving"
    first = 0 if rng.random() >= min(1.0, 0.3 * t) else int(rng.integers(0, len(objects)))
    picked = [objects[first]]
    if len(objects) > 1 and rng.random() < cfg.second_object_prob:
        picked.append(objects[(first + 1) % len(objects)])
    clauses = [_clause(o, still_view, cfg, t, rng) for o in picked]
    body = " and ".join(clauses) if still_view else " while ".join(clauses)
    if still_view:
        body = _pick(STILL_LEADS, t, rng).format(np=body)
    if rng.random() < min(1.0, cfg.background_prob * max(t, 0.1)):
        body = f"{body} {scene}"
    return body


def caption_video(background: str, objects: Sequence[ObjectEvents], still_view: bool, num: int,
                  temperature: float, seed: int, cfg: OfflineCaptionerConfig) -> str:
    """A bullet-list answer of up to ``num`` distinct captions (same form as a VLM's)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for _ in range(MAX_TRIES * num):
        caption = fix_articles(caption_once(background, objects, still_view, cfg, temperature, rng))
        if caption not in out:
            out.append(caption)
        if len(out) == num:
            break
    return bullet_list(out)
