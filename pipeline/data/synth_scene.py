"""Scenes of the embedded synthetic dataset: what happens in each clip (its ground truth).

A scene is a plain background and one or two coloured shapes. Each shape moves in a straight
line (or stays still), grows, shrinks or keeps its size, and may have one event at a random time
in the middle of the clip: it appears, disappears or changes colour. Positions and sizes are in
frame units (x, y in [0, 1]; size relative to the shorter side) so any resolution renders the
same scene. This ground truth goes to ``synthetic_truth.json`` only: taggers and models must
see pixels and caption words, never these fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (120, 120, 120),
    "navy": (16, 24, 80),
    "brown": (96, 60, 34),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (40, 190, 60),
    "blue": (45, 90, 235),
    "yellow": (245, 225, 40),
    "purple": (150, 50, 205),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "static")
SIZE_CHANGES = ("grows", "shrinks", "none")
EVENTS = ("none", "appears", "disappears", "changes_colour")

_DIRECTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}
_SIZE_FACTOR = {"grows": 1.8, "shrinks": 0.5, "none": 1.0}


@dataclass(frozen=True)
class ShapeTrack:
    """One shape's life in a clip; ``t`` below is the clip fraction in [0, 1]."""

    shape: str
    colour: str  # colour at t=0
    motion: str
    size_change: str
    event: str
    event_time: float  # fraction of the clip at which ``event`` happens (0.0 when none)
    new_colour: str  # colour after a change ("" unless event == "changes_colour")
    start: tuple[float, float]  # centre (x, y) at t=0
    end: tuple[float, float]  # centre at t=1
    size_start: float  # half-extent relative to the shorter frame side
    size_end: float

    def visible(self, t: float) -> bool:
        if self.event == "appears":
            return t >= self.event_time
        if self.event == "disappears":
            return t < self.event_time
        return True

    def colour_at(self, t: float) -> str:
        return self.new_colour if self.event == "changes_colour" and t >= self.event_time else self.colour

    def centre_at(self, t: float) -> tuple[float, float]:
        return (self.start[0] + (self.end[0] - self.start[0]) * t,
                self.start[1] + (self.end[1] - self.start[1]) * t)

    def size_at(self, t: float) -> float:
        return self.size_start + (self.size_end - self.size_start) * t


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[ShapeTrack, ...]
    num_frames: int
    fps: int

    def to_dict(self) -> dict:
        return asdict(self)


def _track(rng: np.random.Generator, shape: str, colour: str, event: str,
           new_colour: str) -> ShapeTrack:
    motion = str(rng.choice(MOTIONS, p=[0.22, 0.22, 0.2, 0.2, 0.16]))
    size_change = str(rng.choice(SIZE_CHANGES, p=[0.3, 0.3, 0.4]))
    size_start = float(rng.uniform(0.09, 0.13))
    size_end = size_start * _SIZE_FACTOR[size_change]
    margin = max(size_start, size_end) * 1.3 + 0.02  # triangles reach 1.3x the half-extent
    dx, dy = _DIRECTION[motion]
    travel = float(rng.uniform(0.35, 0.5)) if motion != "static" else 0.0
    travel = min(travel, max(0.0, 0.98 - 2 * margin))  # keeps a valid start range
    # Along the motion axis the start leaves room to travel; across it, anywhere inside.
    x0 = rng.uniform(margin + travel * (dx < 0), 1 - margin - travel * (dx > 0))
    y0 = rng.uniform(margin + travel * (dy < 0), 1 - margin - travel * (dy > 0))
    event_time = float(rng.uniform(0.35, 0.65)) if event != "none" else 0.0
    return ShapeTrack(shape, colour, motion, size_change, event, event_time, new_colour,
                      (float(x0), float(y0)), (float(x0 + dx * travel), float(y0 + dy * travel)),
                      size_start, size_end)


def _overlap(a: ShapeTrack, b: ShapeTrack) -> bool:
    """Whether two shapes ever come close enough to occlude each other (ignoring visibility)."""
    for t in np.linspace(0, 1, 9):
        (ax, ay), (bx, by) = a.centre_at(t), b.centre_at(t)
        if np.hypot(ax - bx, ay - by) < 1.3 * (a.size_at(t) + b.size_at(t)):
            return True
    return False


def sample_scene(rng: np.random.Generator, num_frames: int, fps: int) -> Scene:
    """Draw one scene: background, 1-2 shapes with distinct colours, at most one event each."""
    background = str(rng.choice(list(BACKGROUNDS)))
    n_shapes = 1 if rng.random() < 0.4 else 2
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    # First shape is there from the start; only a second one can appear midway.
    events = [str(rng.choice(["none", "disappears", "changes_colour"], p=[0.5, 0.25, 0.25]))]
    if n_shapes == 2:
        events.append(str(rng.choice(["none", "appears", "disappears", "changes_colour"],
                                     p=[0.35, 0.4, 0.1, 0.15])))
        if events == ["disappears", "disappears"]:  # keep something on screen at the end
            events[1] = "none"
    tracks: list[ShapeTrack] = []
    for i, event in enumerate(events):
        shape = str(rng.choice(SHAPES))
        # New colours come after the initial ones in the permutation: all colours stay distinct.
        new_colour = colours[n_shapes + i] if event == "changes_colour" else ""
        for _ in range(30):
            track = _track(rng, shape, colours[i], event, new_colour)
            if not any(_overlap(track, other) for other in tracks):
                break
        tracks.append(track)
    return Scene(background, tuple(tracks), num_frames, fps)


def sibling_scene(scene: Scene, rng: np.random.Generator) -> Scene:
    """A scene that looks the same at a glance: same background, colours and events, but new
    shape kinds, motions, size changes and positions.

    Used for hard negatives in backbone pretraining (:mod:`pipeline.backbone.stream`): a batch
    of siblings cannot be told apart by colour, so a contrastive model must learn the rest.
    """
    tracks: list[ShapeTrack] = []
    for old in scene.shapes:
        shape = str(rng.choice(SHAPES))
        for _ in range(30):
            track = _track(rng, shape, old.colour, old.event, old.new_colour)
            if not any(_overlap(track, other) for other in tracks):
                break
        tracks.append(track)
    return Scene(scene.background, tuple(tracks), scene.num_frames, scene.fps)
