"""Opening videos and decoding chosen frames with decord, naming the cause of every failure.

decord raises the same bare ``RuntimeError('Error reading ...')`` for a missing, an empty and a
corrupt file (FFmpeg's reason goes to stderr only), so the file is checked first and the cause
is put in a :class:`VideoReadError` message that names the file.
"""

from __future__ import annotations

import math
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Frames decoded per ``get_batch`` call: bounds memory for long, large videos (50 frames of
# 1080p would be ~300 MiB at once) while keeping decord's forward decoding within a call.
DECODE_CHUNK = 16


class VideoReadError(Exception):
    """A video that cannot be used; the message names the file and the cause."""


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_file(path: Path) -> None:
    """Raise :class:`VideoReadError` if ``path`` is missing, not a file, empty or unreadable."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VideoReadError(f"{path}: missing file (no such file)") from None
    except OSError as err:
        raise VideoReadError(f"{path}: cannot stat file ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise VideoReadError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise VideoReadError(f"{path}: cannot open file ({err.strerror})") from None


def open_video(path: Path, decode_threads: int) -> Any:
    """A decord ``VideoReader`` on ``path`` with at least one frame, or :class:`VideoReadError`.

    ``decode_threads`` is FFmpeg's thread count inside one decoder (0 = FFmpeg decides).
    """
    check_file(path)
    import decord  # imported here: readers of stored frames need not load FFmpeg

    try:
        reader = decord.VideoReader(str(path), num_threads=decode_threads)
    except (RuntimeError, decord.DECORDError) as err:
        raise VideoReadError(
            f"{path}: corrupt or unsupported video, decord cannot open it ({_first_line(err)})"
        ) from None
    if len(reader) == 0:
        raise VideoReadError(f"{path}: no decodable frames")
    return reader


def video_fps(reader: Any, path: Path) -> float:
    """Average frame rate, which must be finite and positive (timestamps are index / fps)."""
    fps = float(reader.get_avg_fps())
    if not (math.isfinite(fps) and fps > 0):
        raise VideoReadError(f"{path}: invalid frame rate {fps!r}")
    return fps


def _get_batch(reader: Any, indices: list[int]) -> list[np.ndarray]:
    import decord

    try:
        return list(reader.get_batch(indices).asnumpy())
    except decord.DECORDError as err:
        if "size must exactly match" not in str(err):
            raise
    # decord 0.6 bug: for a few narrow widths (16, 24, 48, 72 px measured) FFmpeg's padded row
    # stride is an exact multiple of the width and decord takes stride / width as the channel
    # count, so get_batch fails and ``reader[i]`` returns [H, W, 4+] rows of ``stride`` bytes.
    # The first 3 * W bytes of each row are the RGB pixels.
    frames = []
    for index in indices:
        raw = reader[index].asnumpy()
        height, width = raw.shape[:2]
        rgb = raw.reshape(height, -1)[:, : 3 * width].reshape(height, width, 3)
        frames.append(np.ascontiguousarray(rgb))
    return frames


def read_frames(reader: Any, indices: list[int], path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, uint8 [H, W, 3] RGB frame)`` for sorted, distinct ``indices``."""
    import decord

    if indices != sorted(set(indices)):
        raise ValueError(f"indices must be sorted and distinct, got {indices}")
    for start in range(0, len(indices), DECODE_CHUNK):
        chunk = indices[start : start + DECODE_CHUNK]
        try:
            frames = _get_batch(reader, chunk)
        except (RuntimeError, decord.DECORDError) as err:
            raise VideoReadError(
                f"{path}: corrupt video, decoding frames {chunk[0]}..{chunk[-1]} failed "
                f"({_first_line(err)})"
            ) from None
        for index, frame in zip(chunk, frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise VideoReadError(f"{path}: frame {index} decoded as {frame.dtype} {frame.shape}")
            yield index, frame
