"""Reading a video's metadata (duration, fps, frame count, size) without decoding it.

PyAV rather than decord: decord reports a missing, empty and corrupt file with the same bare
error, and here the cause must reach the user (see FACTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


class VideoProbeError(RuntimeError):
    """A video file is missing, empty or unreadable; the message names the file and the cause.

    ``cause`` is one word for counting: missing, empty or unreadable.
    """

    def __init__(self, message: str, cause: str = "unreadable") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int


def probe_video(path: str | Path) -> VideoInfo:
    """Metadata of the first video stream of ``path``.

    The frame count comes from the container index when it has one (MP4, AVI); containers
    without one (WebM, MKV) are demuxed, not decoded, to count packets. The duration is the
    stream's, else the container's, else frames / fps.
    """
    import av  # imported here: only probing needs PyAV

    path = Path(path)
    if not path.is_file():
        raise VideoProbeError(f"{path}: video file not found", "missing")
    if path.stat().st_size == 0:
        raise VideoProbeError(f"{path}: video file is empty", "empty")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoProbeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            num_frames = stream.frames
            if not num_frames:
                num_frames = sum(1 for p in container.demux(stream) if p.size)
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
    except VideoProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoProbeError(f"{path}: unreadable video ({type(err).__name__}: {err})") from None
    fps = float(Fraction(rate)) if rate else 0.0
    if duration <= 0 and fps > 0:
        duration = num_frames / fps
    if fps <= 0 and duration > 0:
        fps = num_frames / duration
    info = VideoInfo(duration=float(duration), fps=fps, num_frames=int(num_frames),
                     width=int(width), height=int(height))
    if not (info.num_frames > 0 and info.width > 0 and info.height > 0
            and math.isfinite(info.fps) and info.fps > 0 and info.duration > 0):
        raise VideoProbeError(f"{path}: implausible video metadata {info}")
    return info
