"""Freshly generated synthetic clips for tiny-CLIP pretraining (``tiny.fresh_fraction``).

Why: pretrained on the 480 training clips alone, the tiny CLIP memorises them (train R@1 ~60%,
test ~5%): the frozen features it hands the heads describe the training videos, not colours,
shapes and motions. A real CLIP is pretrained on far more (and other) data than the retrieval
set it is applied to; the synthetic analogue is to draw new scenes from the same generator for
every pretraining batch. Nothing else in the pipeline changes (no extra videos to encode, tag or
train heads on), so the cost is the rendering of the few frames each step samples.

Each fresh clip mimics the dataset's own: a scene from :func:`sample_scene` with a clip length
drawn from the training videos' frame counts, the frames stage's segment-centre frames
(:func:`uniform_indices`), rendered straight at the CLIP frame size (the renderer works in frame
units and anti-aliases, so this matches the frames stage's bicubic downscale of the full-size
clip up to edge rounding, at a third of the cost) and centre-cropped like :func:`clip_frame`,
and captions from the same grammar. Unlike a prepared clip it never went through H.264. Scenes come from their own seed stream
(``[seed, 9, step, video]``), independent of the dataset's (``[seed, 0, i]``), so the test clips
are never among them (positions and sizes are continuous draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.synth_captions import describe_scene, sample_captions
from pipeline.data.synth_render import render_frames
from pipeline.data.synth_scene import sample_scene, sibling_scene
from pipeline.frames.sampling import uniform_indices
from pipeline.frames.transforms import centre_crop_box, shorter_side_size

STREAM_TAG = 9  # seed-sequence tag of the pretraining stream (the dataset uses 0 and 1)


@dataclass(frozen=True)
class ClipGeometry:
    """What a fresh clip must look like to match the prepared dataset."""

    width: int
    height: int
    fps: int
    source_frames: tuple[int, ...]  # frame counts of the training clips (sampled uniformly)
    num_frames: int  # N_v: CLIP frames per video (the frames stage's)
    image_size: int  # S: CLIP frame side

    def __post_init__(self) -> None:
        if not self.source_frames or min(self.source_frames) < 2:
            raise ValueError("need the training clips' frame counts (each >= 2)")
        if self.width < 2 or self.height < 2 or self.fps < 1 or self.num_frames < 1 or self.image_size < 1:
            raise ValueError(f"bad clip geometry {self}")


@dataclass
class FreshBatch:
    frames: np.ndarray       # uint8 [F, S, S, 3], grouped by video, in time order
    frame_video: np.ndarray  # int64 [F], 0..n-1
    captions: list[str]
    caption_video: np.ndarray  # int64 [C]
    scenes: list[dict] | None = None  # each clip's scene (Scene.to_dict), for scene-written tags


def fresh_batch(geometry: ClipGeometry, n: int, frames_per_sample: int, captions_per_sample: int,
                seed: int, step: int, full_captions: float = 0.0, siblings: int = 1) -> FreshBatch:
    """``n`` new clips: ``frames_per_sample`` random CLIP frames (sorted) and
    ``captions_per_sample`` captions each, deterministic in (seed, step). Each caption is a full
    description of the scene (:func:`describe_scene`) with probability ``full_captions``, else
    a partial one as in the dataset. Clips come in groups of ``siblings``: the first of a group
    is a new scene, the others :func:`sibling_scene` of it (same background, colours and events;
    other shapes, motions, sizes), hard negatives that colour alone cannot separate."""
    frames, frame_video, captions, caption_video, scenes = [], [], [], [], []
    render_size = shorter_side_size(geometry.width, geometry.height, geometry.image_size)
    crop = centre_crop_box(*render_size, geometry.image_size)
    for j in range(n):
        rng = np.random.default_rng([seed, STREAM_TAG, step, j])
        if j % max(siblings, 1) == 0:
            length = int(geometry.source_frames[int(rng.integers(len(geometry.source_frames)))])
            scene = base = sample_scene(rng, length, geometry.fps)
        else:
            scene = sibling_scene(base, rng)
            length = scene.num_frames
        scenes.append(scene.to_dict())
        slots = uniform_indices(length, geometry.num_frames)
        pick = np.sort(rng.choice(len(slots), size=min(frames_per_sample, len(slots)), replace=False))
        rendered = render_frames(scene, [slots[k] for k in pick], *render_size)
        left, top, right, bottom = crop
        frames.append(rendered[:, top:bottom, left:right])
        frame_video.extend([j] * len(pick))
        full = rng.random(captions_per_sample) < full_captions
        partial = iter(sample_captions(scene, int((~full).sum()), rng)) if (~full).any() else iter(())
        for is_full in full:
            captions.append(describe_scene(scene, rng)[0] if is_full else next(partial)[0])
            caption_video.append(j)
    return FreshBatch(np.concatenate(frames), np.asarray(frame_video, dtype=np.int64), captions,
                      np.asarray(caption_video, dtype=np.int64), scenes)


def clip_geometry(videos_path: str | Path, frames_dir: str | Path) -> ClipGeometry:
    """The geometry of the prepared training clips (``videos.parquet``) and the frames stage's
    CLIP frames (their count per video and size)."""
    from pipeline.frames.store import FrameStore
    from pipeline.io import read_parquet

    videos = read_parquet(videos_path, columns=["split", "fps", "num_frames", "width", "height"])
    train = videos[videos["split"] == "train"]
    store = FrameStore(frames_dir)
    return geometry_of(train["width"], train["height"], train["fps"], train["num_frames"],
                       store.num_frames, store.image_size)


def geometry_of(widths: Sequence[int], heights: Sequence[int], fps: Sequence[float],
                source_frames: Sequence[int], num_frames: int, image_size: int) -> ClipGeometry:
    """The geometry of a prepared synthetic dataset (one size and frame rate expected)."""
    sizes = {(int(w), int(h)) for w, h in zip(widths, heights)}
    rates = {int(round(float(f))) for f in fps}
    if len(sizes) != 1 or len(rates) != 1:
        raise ValueError(f"fresh clips need one video size and frame rate, got {sorted(sizes)} at {sorted(rates)}")
    (width, height), = sizes
    rate, = rates
    return ClipGeometry(width, height, rate, tuple(int(s) for s in source_frames), num_frames, image_size)
