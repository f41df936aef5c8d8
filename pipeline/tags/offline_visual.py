"""Offline visual tagger: general tags from the VLM frames' pixels only.

Per object track (see :mod:`pipeline.tags.blobs`): its colour (and a colour change), its shape
from the bounding-box fill ratio (square ~1, circle ~pi/4, triangle ~1/2), its motion direction
from the centroid's displacement, growth/shrinking from the area ratio, and whether it appears
after the first frame or disappears before the last. Plus the background colour and the number
of objects. Detected concepts become a top-N answer through :func:`sample_tags`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from pipeline.tags.blobs import (Blob, Track, background_colour, colour_codes, colour_names,
                                 decode_frames, find_blobs, link_tracks, palette)
from pipeline.tags.lexicon import ConceptEntry, Lexicon
from pipeline.tags.sampling import Concept, SamplingConfig, bullet_list, sample_tags


@dataclass(frozen=True)
class OfflineVisualConfig:
    lexicon: str  # "builtin" or a path to a lexicon JSON
    foreground_threshold: float  # RGB distance from the background colour marking foreground
    min_saturation: float  # below: achromatic (white/grey/black)
    min_blob_area: float  # smallest blob, fraction of the frame area
    min_track_frames: int  # shorter tracks are noise
    max_jump: float  # largest centroid step between frames (fraction of the frame side)
    colour_penalty: float  # matching cost of a colour change (keeps recoloured shapes tracked)
    move_threshold: float  # centroid displacement over the clip (fraction of the side) that is motion
    size_ratio: float  # late/early area ratio that is growth (its inverse: shrinking)
    square_fill: float  # fill ratio at or above which a blob is a square
    circle_fill: float  # ... a circle; below it a triangle
    triangle_skew: float  # centroid offset from the box centre at or above which: a triangle
    mention_bonus: float  # salience added per repeated concept (e.g. two red objects)
    sampling: SamplingConfig

    def __post_init__(self) -> None:
        if not 0 < self.foreground_threshold < 442:
            raise ValueError("foreground_threshold must be in (0, 442) (RGB distance)")
        if not 0 < self.circle_fill < self.square_fill <= 1:
            raise ValueError("need 0 < circle_fill < square_fill <= 1")
        if not 0 < self.triangle_skew < 0.5:
            raise ValueError(f"triangle_skew must be in (0, 0.5), got {self.triangle_skew}")
        if self.size_ratio <= 1:
            raise ValueError(f"size_ratio must be > 1, got {self.size_ratio}")
        if self.min_track_frames < 1:
            raise ValueError("min_track_frames must be >= 1")
        if not 0 <= self.min_saturation <= 1 or not 0 < self.min_blob_area < 1:
            raise ValueError("min_saturation must be in [0, 1] and min_blob_area in (0, 1)")


@dataclass(frozen=True)
class ObjectEvents:
    """What one tracked object does."""

    colours: tuple[str, ...]  # majority colour, then the colour it changes to (if any)
    shape: str
    direction: str | None  # "leftward"/"rightward"/"upward"/"downward"; None = static
    size: str | None  # "growth"/"shrinking"/None
    appears: bool
    disappears: bool


#: Knobs of the tags drawn from an analysis, not of the analysis itself (what an object is,
#: how it moves): the offline captioner, which reads the analysis only, does not depend on them.
TAGGING_ONLY = ("mention_bonus", "sampling")
#: The params keys of the pixel analysis (what the offline captioner's stage declares in dvc.yaml).
ANALYSIS_PARAMS = tuple(f"tag_video.offline.{f.name}" for f in fields(OfflineVisualConfig)
                        if f.name not in TAGGING_ONLY)


def analysis_knobs(cfg: OfflineVisualConfig) -> dict[str, Any]:
    """The config's pixel-analysis knobs and lexicon (everything but :data:`TAGGING_ONLY`)."""
    return {k: v for k, v in asdict(cfg).items() if k not in TAGGING_ONLY}


def _majority(values: Sequence[str]) -> str:
    return Counter(values).most_common(1)[0][0]


def shape_of(blob: Blob, cfg: OfflineVisualConfig) -> str:
    """Square: fills its box; triangle: off-centre centroid or a low fill; else a circle."""
    if blob.fill >= cfg.square_fill:
        return "square"
    if blob.skew >= cfg.triangle_skew or blob.fill < cfg.circle_fill:
        return "triangle"
    return "circle"


def track_events(track: Track, num_frames: int, cfg: OfflineVisualConfig) -> ObjectEvents:
    blobs = track.blobs
    whole = [b for b in blobs if not b.touches_border] or blobs  # cut-off blobs distort shape/size
    shape = _majority([shape_of(b, cfg) for b in whole])
    half = max(1, len(blobs) // 2)
    early, late = _majority([b.colour for b in blobs[:half]]), _majority([b.colour for b in blobs[half:]] or [""])
    colours = (early, late) if late and late != early else (_majority([b.colour for b in blobs]),)
    dx, dy = blobs[-1].cx - blobs[0].cx, blobs[-1].cy - blobs[0].cy
    span = track.last - track.first
    if span >= 2:  # a short-lived object moves as fast as a long-lived one: judge the pace
        dx, dy = dx * (num_frames - 1) / span, dy * (num_frames - 1) / span
    direction = None
    if max(abs(dx), abs(dy)) >= cfg.move_threshold:
        if abs(dx) >= abs(dy):
            direction = "rightward" if dx > 0 else "leftward"
        else:
            direction = "downward" if dy > 0 else "upward"  # image rows grow downwards
    size = None
    if len(whole) >= 3:
        k = max(1, len(whole) // 3)
        ratio = np.mean([b.area for b in whole[-k:]]) / np.mean([b.area for b in whole[:k]])
        if ratio >= cfg.size_ratio:
            size = "growth"
        elif ratio <= 1 / cfg.size_ratio:
            size = "shrinking"
    return ObjectEvents(colours, shape, direction, size, appears=track.first > 0,
                        disappears=track.last < num_frames - 1)


def analyse_video(jpegs: Sequence[bytes], lexicon: Lexicon,
                  cfg: OfflineVisualConfig) -> tuple[str, list[ObjectEvents]]:
    """(background colour name, events of each tracked object, longest-lived first)."""
    frames = decode_frames(jpegs)
    bg = background_colour(frames)
    bg_name = str(colour_names(bg[None], lexicon.hues, cfg.min_saturation)[0])
    names = palette(lexicon.hues)
    codes = colour_codes(frames, lexicon.hues, cfg.min_saturation)  # all frames at once
    per_frame = [find_blobs(frame, i, bg, codes[i], names, cfg.foreground_threshold, cfg.min_blob_area)
                 for i, frame in enumerate(frames)]
    tracks = [t for t in link_tracks(per_frame, cfg.max_jump, cfg.colour_penalty)
              if len(t.blobs) >= cfg.min_track_frames]
    tracks.sort(key=lambda t: (-len(t.blobs), -max(b.area for b in t.blobs)))
    return bg_name, [track_events(t, len(frames), cfg) for t in tracks]


def _template(entry: ConceptEntry, **values: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.format(**values) for t in entry.tags))


def video_concepts(background: str, objects: Sequence[ObjectEvents], lexicon: Lexicon,
                   cfg: OfflineVisualConfig) -> list[Concept]:
    """Scored concepts of one video (repeated concepts gain ``mention_bonus`` each)."""
    names: list[str] = []
    custom: dict[str, Concept] = {}
    for obj in objects:
        names += ["colour", *obj.colours, "geometry", obj.shape]
        key = f"object:{obj.colours[0]} {obj.shape}"
        entry = lexicon.templates["object"]
        custom.setdefault(key, Concept(key, entry.salience,
                                       _template(entry, colour=obj.colours[0], shape=obj.shape)))
        names.append(key)
        names += ["motion", obj.direction] if obj.direction else ["stillness"]
        names += [obj.size] if obj.size else []
        names += ["colour change"] if len(obj.colours) > 1 else []
        names += ["appearance"] if obj.appears else []
        names += ["disappearance"] if obj.disappears else []
    names.append("multiple objects" if len(objects) > 1 else "single object")
    entry = lexicon.templates["background_colour"]
    key = f"background:{background}"
    custom[key] = Concept(key, entry.salience, _template(entry, colour=background))
    names += ["background", key]
    counts = Counter(names)
    out = []
    for name in dict.fromkeys(names):
        base = custom.get(name) or Concept(name, lexicon.concepts[name].salience,
                                           lexicon.concepts[name].tags)
        out.append(Concept(base.name, base.salience + cfg.mention_bonus * (counts[name] - 1),
                           base.phrases))
    return out


def tag_analysis(background: str, objects: Sequence[ObjectEvents], temperature: float, seed: int,
                 lexicon: Lexicon, cfg: OfflineVisualConfig) -> str:
    """A bullet-list answer from an :func:`analyse_video` result (same form as a VLM's)."""
    concepts = video_concepts(background, objects, lexicon, cfg)
    rng = np.random.default_rng(seed)
    return bullet_list(sample_tags(concepts, lexicon.fillers, temperature, rng, cfg.sampling))


def tag_frames(jpegs: Sequence[bytes], temperature: float, seed: int, lexicon: Lexicon,
               cfg: OfflineVisualConfig) -> str:
    """A bullet-list answer for one video's frames (same form as a VLM's)."""
    return tag_analysis(*analyse_video(jpegs, lexicon, cfg), temperature, seed, lexicon, cfg)


def analysis_to_json(background: str, objects: Sequence[ObjectEvents]) -> str:
    return json.dumps({"background": background, "objects": [asdict(o) for o in objects]})


def analysis_from_json(text: str) -> tuple[str, list[ObjectEvents]]:
    data = json.loads(text)
    return data["background"], [ObjectEvents(**{**o, "colours": tuple(o["colours"])})
                                for o in data["objects"]]
