"""Uniform frame sampling: which source frames a video contributes.

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
