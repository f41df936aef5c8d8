"""Fresh synthetic clips for tiny-CLIP pretraining: same renderer, deterministic, dataset-shaped."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backbone.stream import ClipGeometry, fresh_batch, geometry_of
from pipeline.data.synth_render import render_frames, render_scene
from pipeline.data.synth_scene import sample_scene
from pipeline.frames.transforms import clip_frame

GEOMETRY = ClipGeometry(width=96, height=96, fps=10, source_frames=(20, 33, 40), num_frames=12, image_size=64)


def test_render_frames_equals_the_rows_of_render_scene():
    scene = sample_scene(np.random.default_rng(3), 17, 10)
    full = render_scene(scene, 48, 32)
    np.testing.assert_array_equal(render_frames(scene, [0, 5, 16], 48, 32), full[[0, 5, 16]])
    with pytest.raises(IndexError):
        render_frames(scene, [17], 48, 32)


def test_fresh_batch_is_deterministic_and_shaped_like_the_dataset():
    a = fresh_batch(GEOMETRY, 5, 4, 3, seed=0, step=7)
    b = fresh_batch(GEOMETRY, 5, 4, 3, seed=0, step=7)
    c = fresh_batch(GEOMETRY, 5, 4, 3, seed=0, step=8)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.captions == b.captions and a.captions != c.captions
    assert a.frames.shape == (20, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.frame_video.tolist() == [j for j in range(5) for _ in range(4)]
    assert a.caption_video.tolist() == [j for j in range(5) for _ in range(3)]
    assert all(isinstance(t, str) and t for t in a.captions)


def test_fresh_batch_full_captions_describe_every_shape():
    partial = fresh_batch(GEOMETRY, 6, 2, 2, seed=1, step=0)
    full = fresh_batch(GEOMETRY, 6, 2, 2, seed=1, step=0, full_captions=1.0)
    np.testing.assert_array_equal(partial.frames, full.frames)  # same clips, other captions
    assert all("background" in t or "backdrop" in t for t in full.captions)
    assert sum(len(t) for t in full.captions) > sum(len(t) for t in partial.captions)


def test_siblings_share_colours_and_background_but_not_the_rest():
    from pipeline.data.synth_scene import sibling_scene

    rng = np.random.default_rng(4)
    for _ in range(30):
        base = sample_scene(rng, 25, 10)
        sib = sibling_scene(base, rng)
        assert sib.background == base.background and sib.num_frames == base.num_frames
        assert [(t.colour, t.event, t.new_colour) for t in sib.shapes] == \
            [(t.colour, t.event, t.new_colour) for t in base.shapes]
    batch = fresh_batch(GEOMETRY, 8, 1, 1, seed=2, step=0, full_captions=1.0, siblings=4)
    groups = [batch.captions[:4], batch.captions[4:]]
    assert len(set(batch.captions)) == 8
    for group in groups:  # each group names one background
        backgrounds = {w for t in group for w in ("black", "gray", "navy", "brown") if w in t}
        assert len(backgrounds) == 1, group


def test_direct_small_render_matches_the_frames_stage_downscale():
    # The stream renders at 64 px; the frames stage decodes 96 px and downsizes bicubically.
    scene = sample_scene(np.random.default_rng(5), 30, 10)
    small = render_frames(scene, [10], 64, 64)[0].astype(float)
    resized = clip_frame(render_frames(scene, [10], 96, 96)[0], 64).astype(float)
    assert np.abs(small - resized).mean() < 3.0  # edges differ by rounding; colours do not


def test_geometry_of_a_dataset():
    g = geometry_of([96, 96], [96, 96], [10.0, 10.0], [20, 31], 12, 64)
    assert (g.width, g.height, g.fps, g.source_frames) == (96, 96, 10, (20, 31))
    with pytest.raises(ValueError, match="one video size"):
        geometry_of([96, 64], [96, 64], [10, 10], [20, 20], 12, 64)
