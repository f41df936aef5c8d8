"""Frame sampling: which source frames a video contributes.

Two modes (``frames.sampling``):

``uniform`` (the default) -- N segment centres over the whole clip, described below.

``fps`` -- the official MAC-VR / DiCoSA loaders: source frames ``0, s, 2s, ...`` with the stride
``s = fps / sample_fps`` rounded (the decord loader of MSR-VTT: ``round``) or truncated (the cv2
loader of DiDeMo and ActivityNet: ``floor``), optionally only within the first ``max_seconds``
(the DiDeMo loader reads seconds 0..31: ``max_seconds: 32``); then, when that gives more than N
frames, N of them picked uniformly with ``linspace(0, n - 1, N)`` truncated to integers; a clip
with fewer frames keeps them all and is padded (:func:`fps_indices`).

For ``T`` decodable frames and ``N`` samples the ``i``-th index is the centre of the ``i``-th of
``N`` equal segments::

    index_i = floor((i + 0.5) * T / N),   i = 0 .. N-1

computed in integers as ``((2i + 1) * T) // (2N)`` so no float rounding can move an index.
When ``T >= N`` the indices are strictly increasing (consecutive ones differ by ``T/N >= 1``
before flooring) and the last is ``< T``; ``T == N`` gives ``0 .. N-1``. When ``T < N`` the
video is too short to give ``N`` distinct frames: every frame is taken once (``0 .. T-1``) and
the caller pads the rest (CLIP frames: zeros with mask False; VLM frames: fewer JPEGs).
"""

from __future__ import annotations

import math

import numpy as np


def uniform_indices(num_source: int, num_samples: int) -> list[int]:
    """Segment-centre indices of ``num_samples`` frames out of ``num_source`` (see module doc)."""
    if num_source < 1:
        raise ValueError(f"num_source must be >= 1, got {num_source}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_source < num_samples:
        return list(range(num_source))
    return [((2 * i + 1) * num_source) // (2 * num_samples) for i in range(num_samples)]


def timestamps(indices: list[int], fps: float) -> list[float]:
    """Seconds from the start of the video of each frame index (``index / fps``)."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return [i / fps for i in indices]


def fps_indices(num_source: int, fps: float, sample_fps: float, num_samples: int, rounding: str = "round",
                max_seconds: float | None = None) -> list[int]:
    """The official loaders' frames (see the module docstring): every ``stride``-th source frame
    from frame 0 (stride = fps / sample_fps, rounded or floored, at least 1), within the first
    ``max_seconds`` if given, uniformly subsampled to at most ``num_samples``."""
    if num_source < 1:
        raise ValueError(f"num_source must be >= 1, got {num_source}")
    if not (fps > 0 and sample_fps > 0):
        raise ValueError(f"fps and sample_fps must be > 0, got {fps} and {sample_fps}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if rounding == "round":  # the decord loader: real frame rate
        rate = fps
        stride = round(fps / sample_fps)
    elif rounding == "floor":  # the cv2 loader: the integer part of the frame rate, for stride and time
        rate = float(int(fps)) or 1.0
        stride = int(rate / sample_fps)
    else:
        raise ValueError(f"rounding must be round or floor, got {rounding!r}")
    stride = max(1, stride)
    last = num_source if max_seconds is None else min(num_source, math.ceil(max_seconds * rate))
    candidates = list(range(0, max(last, 1), stride))
    if len(candidates) <= num_samples:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, num=num_samples).astype(np.int64)
    return [candidates[i] for i in picks]
