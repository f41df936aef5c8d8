"""Writing H.264 videos (PyAV). Reading is decord's job, in ``pipeline.frames``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path


def write_video(path: str | Path, frames: np.ndarray, fps: int | Fraction = 10, crf: int = 18) -> None:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]`` RGB, even H and W) as an H.264 MP4, atomically.

    ``fps`` must be an int or Fraction: PyAV rejects float rates.
    """
    import av  # imported here: only video writers need PyAV

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need >= 1 frame and even height/width for yuv420p, got {frames.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("h264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            # mbtree rate control made bytes depend on process memory layout; off = reproducible output.
            stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
