"""Per-frame image operations: the CLIP crop and the VLM JPEG.

The CLIP crop reproduces the geometry of CLIP's own preprocessing (``clip.load``'s
``Resize(S, BICUBIC)`` then ``CenterCrop(S)`` on a PIL image) pixel for pixel, so stored frames
are exactly what CLIP would see before ``ToTensor``/``Normalize``. It resizes with Pillow
(antialiased bicubic) after decoding at full resolution rather than asking decord to scale
while decoding: one full-size decode feeds both the CLIP and the VLM frames, which measured
~2x faster than two scaled decodes (320x240 and 1280x720 clips, see the frames report).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

BICUBIC = Image.Resampling.BICUBIC


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``size`` (torchvision's rounding:
    the longer side is ``floor(size * long / short)``)."""
    if width <= height:
        return size, (size * height) // width
    return (size * width) // height, size


def centre_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred ``size`` x ``size`` square (torchvision's
    ``round((dim - size) / 2)`` offsets)."""
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return left, top, left + size, top + size


def clip_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3]: shorter side to ``size`` (bicubic), centre crop."""
    image = Image.fromarray(frame)
    image = image.resize(shorter_side_size(image.width, image.height, size), BICUBIC)
    return np.asarray(image.crop(centre_crop_box(image.width, image.height, size)))


def vlm_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side at most ``max_side``; never upscales."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def vlm_jpeg(frame: np.ndarray, max_side: int, quality: int) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes, longer side <= ``max_side`` (bicubic), at ``quality``."""
    image = Image.fromarray(frame)
    size = vlm_size(image.width, image.height, max_side)
    if size != image.size:
        image = image.resize(size, BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
