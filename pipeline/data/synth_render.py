"""Drawing synthetic scenes into RGB frames with NumPy (anti-aliased, deterministic).

Each shape is a coverage map in [0, 1] computed from a signed distance at pixel centres (one
pixel of soft edge), blended over the frame in float32 and rounded once: the same scene always
gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.data.synth_scene import BACKGROUNDS, COLOURS, Scene, ShapeTrack

# Outward edge normals of an upward-pointing equilateral triangle (image y axis points down).
_TRIANGLE_NORMALS = np.array([[0.0, 1.0], [-np.sqrt(3) / 2, -0.5], [np.sqrt(3) / 2, -0.5]])
# Circumradius of a triangle relative to the shape's half-extent: similar area to the square.
_TRIANGLE_SCALE = 1.3


def coverage(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Fraction of each pixel covered by ``shape`` centred at (cx, cy) px with half-extent r px."""
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        inside = r - np.hypot(dx, dy)
    elif shape == "square":
        inside = np.minimum(r - np.abs(dx), r - np.abs(dy))
    elif shape == "triangle":
        big = r * _TRIANGLE_SCALE
        # Inradius is half the circumradius; inside when every edge distance is below it.
        dist = dx[..., None] * _TRIANGLE_NORMALS[:, 0] + dy[..., None] * _TRIANGLE_NORMALS[:, 1]
        inside = big / 2 - dist.max(axis=-1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(inside + 0.5, 0.0, 1.0).astype(np.float32)


def render_scene(scene: Scene, width: int, height: int) -> np.ndarray:
    """All frames of ``scene`` as uint8 ``[T, height, width, 3]`` RGB."""
    return render_frames(scene, range(scene.num_frames), width, height)


def render_frames(scene: Scene, indices: Sequence[int], width: int, height: int) -> np.ndarray:
    """Frames ``indices`` (0..num_frames-1) of ``scene`` as uint8 ``[len, height, width, 3]``,
    bit-identical to the same rows of :func:`render_scene` (for pretraining on a few frames
    of many fresh clips without drawing the rest)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    unit = float(min(width, height))
    background = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    frames = np.empty((len(indices), height, width, 3), dtype=np.uint8)
    for k, i in enumerate(indices):
        if not 0 <= i < scene.num_frames:
            raise IndexError(f"frame {i} outside a {scene.num_frames}-frame scene")
        t = i / max(scene.num_frames - 1, 1)
        canvas = np.broadcast_to(background, (height, width, 3)).copy()
        for track in scene.shapes:
            _draw(canvas, track, t, xs, ys, width, height, unit)
        frames[k] = np.rint(canvas).astype(np.uint8)
    return frames


def _draw(canvas: np.ndarray, track: ShapeTrack, t: float, xs: np.ndarray, ys: np.ndarray,
          width: int, height: int, unit: float) -> None:
    if not track.visible(t):
        return
    x, y, r = track.centre_at(t)[0] * width, track.centre_at(t)[1] * height, track.size_at(t) * unit
    # Only the shape's bounding box (plus the soft edge) can change: draw there.
    reach = r * _TRIANGLE_SCALE + 2
    x0, x1 = max(int(x - reach), 0), min(int(x + reach) + 1, width)
    y0, y1 = max(int(y - reach), 0), min(int(y + reach) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    box = (slice(y0, y1), slice(x0, x1))
    alpha = coverage(track.shape, x, y, r, xs[box], ys[box])[..., None]
    colour = np.array(COLOURS[track.colour_at(t)], dtype=np.float32)
    canvas[box] *= 1.0 - alpha
    canvas[box] += alpha * colour
