"""Pixel analysis for the offline visual tagger: background, coloured blobs, tracks.

Frames are JPEGs of a plain background with coloured foreground objects. The background colour
is the median of the frame borders; foreground pixels are those far from it; each pixel gets a
colour name from its hue/saturation/value, and connected same-colour foreground regions are
blobs. Blobs are linked across frames into tracks by minimum-cost assignment on centroid
distance (plus a penalty for a colour change, so a shape that changes colour keeps its track).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

WHITE_MIN_VALUE = 0.8  # achromatic pixels brighter than this are "white"
BLACK_MAX_VALUE = 0.2  # any pixel darker than this is "black"
BROWN_MAX_VALUE = 0.6  # orange-hued pixels darker than this are "brown"
_NO_MATCH = 1e6
_SQUARE3 = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Blob:
    frame: int
    cx: float  # centroid, fraction of width (0 = left)
    cy: float  # centroid, fraction of height (0 = top)
    area: float  # fraction of the frame area
    fill: float  # area / bounding-box area (square ~1, circle ~0.79, triangle ~0.5)
    skew: float  # centroid's offset from the box centre, fraction of the box side (triangle ~1/6)
    colour: str
    touches_border: bool


@dataclass
class Track:
    blobs: list[Blob]

    @property
    def first(self) -> int:
        return self.blobs[0].frame

    @property
    def last(self) -> int:
        return self.blobs[-1].frame


def decode_frames(jpegs: Sequence[bytes]) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB; all frames must share one size."""
    frames = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"frames of one video differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)


def background_colour(frames: np.ndarray, ring: int = 2) -> np.ndarray:
    """Median RGB of the outer ``ring`` pixels of every frame (objects rarely cover borders)."""
    t, h, w, _ = frames.shape
    ring = max(1, min(ring, h // 4, w // 4))
    border = np.concatenate([
        frames[:, :ring].reshape(-1, 3), frames[:, -ring:].reshape(-1, 3),
        frames[:, :, :ring].reshape(-1, 3), frames[:, :, -ring:].reshape(-1, 3)])
    return np.median(border, axis=0)


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], for uint8 or float RGB."""
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.where(v > 0, c / np.where(v > 0, v, 1), 0.0)
    safe = np.where(c > 0, c, 1)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(c > 0, h * 60.0, 0.0) % 360.0
    return h, s, v


def palette(hues: Sequence[tuple[float, float, str]]) -> tuple[str, ...]:
    """Every colour name :func:`colour_codes` can give (index = code)."""
    return tuple(dict.fromkeys([*(name for _, _, name in hues), "brown", "white", "grey", "black"]))


def colour_codes(rgb: np.ndarray, hues: Sequence[tuple[float, float, str]],
                 min_saturation: float) -> np.ndarray:
    """A colour code per pixel (int8, index into :func:`palette`), any leading shape."""
    names = palette(hues)
    code = {n: i for i, n in enumerate(names)}
    h, s, v = rgb_to_hsv(rgb)
    out = np.full(h.shape, code["grey"], dtype=np.int8)
    chromatic = (s >= min_saturation) & (v >= BLACK_MAX_VALUE)
    for lo, hi, name in hues:
        out[chromatic & (h >= lo) & (h < hi)] = code[name]
    out[chromatic & (out == code["orange"]) & (v < BROWN_MAX_VALUE)] = code["brown"]
    out[~chromatic & (v >= WHITE_MIN_VALUE)] = code["white"]
    out[v < BLACK_MAX_VALUE] = code["black"]
    return out


def colour_names(rgb: np.ndarray, hues: Sequence[tuple[float, float, str]],
                 min_saturation: float) -> np.ndarray:
    """A colour name per pixel (object array with the shape of ``rgb[..., 0]``)."""
    return np.array(palette(hues), dtype=object)[colour_codes(rgb, hues, min_saturation)]


def find_blobs(frame: np.ndarray, index: int, background: np.ndarray, codes: np.ndarray,
               names: Sequence[str], threshold: float, min_area: float) -> list[Blob]:
    """Connected same-colour foreground regions of one frame, at least ``min_area`` large.

    ``codes`` are the frame's :func:`colour_codes`, ``names`` the :func:`palette` they index.
    """
    h, w, _ = frame.shape
    dist = np.linalg.norm(frame.astype(np.float32) - background.astype(np.float32), axis=-1)
    foreground = ndimage.binary_opening(dist > threshold, structure=_SQUARE3)
    blobs = []
    for code in np.unique(codes[foreground]):
        mask = ndimage.binary_opening(foreground & (codes == code), structure=_SQUARE3)
        colour = names[int(code)]
        labels, count = ndimage.label(mask)
        for sl, k in zip(ndimage.find_objects(labels), range(1, count + 1)):
            region = labels[sl] == k
            area = int(region.sum())
            if area < min_area * h * w:
                continue
            ys, xs = np.nonzero(region)
            bh, bw = region.shape
            # Small blobs get rounded by JPEG + opening, which blurs fill ratios (a 50-pixel
            # triangle can fill 0.8 of its box); the centroid's offset from the box centre
            # (1/6 of the side for any triangle, 0 for circles and squares) survives that.
            skew = max(abs(ys.mean() + 0.5 - bh / 2) / bh, abs(xs.mean() + 0.5 - bw / 2) / bw)
            touches = sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w
            blobs.append(Blob(index, (xs.mean() + sl[1].start + 0.5) / w,
                              (ys.mean() + sl[0].start + 0.5) / h, area / (h * w), area / (bh * bw),
                              float(skew), str(colour), bool(touches)))
    return blobs


def _cost(a: Blob, b: Blob, max_jump: float, colour_penalty: float) -> float:
    jump = float(np.hypot(a.cx - b.cx, a.cy - b.cy))
    if jump > max_jump:
        return _NO_MATCH
    return jump + (colour_penalty if a.colour != b.colour else 0.0)


def link_tracks(blobs_per_frame: Sequence[list[Blob]], max_jump: float,
                colour_penalty: float) -> list[Track]:
    """Link blobs of consecutive frames (one-frame gaps allowed) into tracks."""
    tracks: list[Track] = []
    for t, blobs in enumerate(blobs_per_frame):
        active = [tr for tr in tracks if t - tr.last <= 2]
        if active and blobs:
            cost = np.array([[_cost(tr.blobs[-1], b, max_jump, colour_penalty) for b in blobs]
                             for tr in active])
            rows, cols = linear_sum_assignment(cost)
            matched = set()
            for r, c in zip(rows, cols):
                if cost[r, c] < _NO_MATCH:
                    active[r].blobs.append(blobs[c])
                    matched.add(c)
        else:
            matched = set()
        tracks.extend(Track([b]) for i, b in enumerate(blobs) if i not in matched)
    return tracks
