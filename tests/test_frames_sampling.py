"""Frame sampling formula, per-frame transforms and FramesConfig validation (no video I/O)."""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError, leaf_keys, load_section
from pipeline.frames import FramesConfig, timestamps, uniform_indices
from pipeline.frames.sampling import fps_indices
from pipeline.frames.transforms import clip_frame, vlm_jpeg, vlm_size

VALID = dict(sampling="uniform", sample_fps=1.0, fps_stride="round", max_seconds=None, num_frames=12, image_size=64,
             padding="zero", vlm_num_frames=8, vlm_max_side=336, jpeg_quality=90, workers=2, on_error="raise")


def test_uniform_indices_match_segment_centres():
    for total in range(1, 81):
        for samples in range(1, 25):
            got = uniform_indices(total, samples)
            if total < samples:
                assert got == list(range(total))
                continue
            want = [math.floor((i + Fraction(1, 2)) * total / samples) for i in range(samples)]
            assert got == want, (total, samples)
            assert all(a < b for a, b in zip(got, got[1:])) and 0 <= got[0] and got[-1] < total


def test_uniform_indices_known_values():
    assert uniform_indices(12, 12) == list(range(12))
    assert uniform_indices(5, 12) == [0, 1, 2, 3, 4]
    assert uniform_indices(30, 12) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28]
    assert uniform_indices(100, 4) == [12, 37, 62, 87]
    assert uniform_indices(7, 1) == [3]


@pytest.mark.parametrize("total,samples", [(0, 3), (5, 0), (-1, 2)])
def test_uniform_indices_rejects_bad_counts(total, samples):
    with pytest.raises(ValueError):
        uniform_indices(total, samples)


def rule(num_source: int, fps: float, sample_fps: float, n: int, stride_of) -> list[int]:
    """The documented fps rule: one frame every ``stride`` source frames from frame 0, then
    ``np.linspace(0, len - 1, N).astype(int)`` of those when there are more than N."""
    step = max(1, stride_of(fps, sample_fps))
    taken = [k * step for k in range(-(-num_source // step))]
    if len(taken) > n:
        taken = [taken[i] for i in np.linspace(0, len(taken) - 1, n).astype(int)]
    return taken


def clip4clip(frame_count: int, fps: float, n: int, max_seconds: int | None = None) -> list[int]:
    """The official cv2 loader (CLIP4Clip's ``video_to_tensor`` at ``feature_framerate`` 1, then the
    dataloader's ``slice_framepos`` 2), transcribed: cv2's integer fps, second by second until a
    read fails (or up to ``max_seconds``), then ``np.linspace(..., dtype=int)`` down to ``max_frames``."""
    fps = int(fps)
    total_duration = (frame_count + fps - 1) // fps
    end_sec = total_duration if max_seconds is None else min(total_duration, max_seconds - 1)
    inds = list(np.arange(0, fps, fps // 1))[:1]
    frames = []
    for sec in np.arange(0, end_sec + 1):
        ok = True
        for ind in inds:
            index = int(sec * fps) + int(ind)
            if index >= frame_count:  # cap.read() fails past the end
                ok = False
                break
            frames.append(index)
        if not ok:
            break
    if n < len(frames):
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, num=n, dtype=int)]
    return frames


def decord_loader(num_frames: int, fps: float, sample_fps: int, n: int) -> list[int]:
    """The official decord loader (MSR-VTT), transcribed: a stride of round(fps / sample_fps)
    over the whole clip, then ``np.linspace(..., dtype=int)`` down to ``max_frames``."""
    f_start, f_end = 0, num_frames - 1
    t_stride = int(round(float(fps) / sample_fps))
    all_pos = list(range(f_start, f_end + 1, t_stride))
    if len(all_pos) > n:
        return [all_pos[i] for i in np.linspace(0, len(all_pos) - 1, num=n, dtype=int)]
    return all_pos


STRIDES = {"floor": lambda fps, s: math.floor(int(fps) / s), "round": lambda fps, s: round(fps / s)}


@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_fps_indices_follow_the_documented_rule(rounding):
    for fps in (1, 5, 10, 24, 25, 29.97, 30, 60):
        for sample_fps in (0.5, 1.0, 2.0, 3.0, 10.0):
            for num_source in (1, 2, 7, 30, 31, 99, 301, 1000):
                for n in (1, 4, 12, 50):
                    got = fps_indices(num_source, float(fps), sample_fps, n, rounding)
                    want = rule(num_source, fps, sample_fps, n, STRIDES[rounding])
                    assert got == want, (num_source, fps, sample_fps, n, rounding)
                    assert all(0 <= i < num_source for i in got) and got == sorted(set(got))


def test_fps_indices_equal_the_official_loaders():
    for fps in (8.0, 10.0, 25.0, 29.97, 30.0, 59.94):
        for frame_count in (1, 9, 10, 11, 149, 150, 151, 900, 3601):
            for n in (4, 12, 50):
                assert fps_indices(frame_count, fps, 1.0, n, "floor") == clip4clip(frame_count, fps, n), \
                    (fps, frame_count, n)
                for sample_fps in (1, 2, 3):
                    assert fps_indices(frame_count, fps, float(sample_fps), n, "round") == \
                        decord_loader(frame_count, fps, sample_fps, n), (fps, frame_count, n, sample_fps)


def test_fps_indices_max_seconds_reads_only_the_start():
    """The DiDeMo loader reads seconds 0..31 (max_seconds 32) however long the video."""
    assert fps_indices(100 * 25, 25.0, 1.0, 50, "floor", 32.0) == [25 * s for s in range(32)]
    assert fps_indices(100 * 25, 25.0, 1.0, 50, "floor", 32.0) == clip4clip(100 * 25, 25.0, 50, max_seconds=32)
    assert fps_indices(10 * 25, 25.0, 1.0, 50, "floor", 32.0) == [25 * s for s in range(10)]  # shorter: all of it
    assert fps_indices(3000, 30.0, 1.0, 4, "floor", 2.5) == [0, 30, 60]  # up to 2.5 s: frames 0..74


def test_fps_indices_known_values_and_errors():
    assert fps_indices(95, 30.0, 1.0, 12) == [0, 30, 60, 90]  # short clip: all kept, padded later
    assert fps_indices(300, 10.0, 1.0, 12) == [0, 20, 50, 70, 100, 130, 150, 180, 210, 230, 260, 290]
    assert fps_indices(5, 0.5, 1.0, 12) == [0, 1, 2, 3, 4]  # below 1 fps: every frame
    assert fps_indices(100, 29.97, 1.0, 50, "round")[:2] == [0, 30] and \
        fps_indices(100, 29.97, 1.0, 50, "floor")[:2] == [0, 29]  # the two loaders differ
    for bad in [(0, 10.0, 1.0, 4), (5, 0.0, 1.0, 4), (5, 10.0, 0.0, 4), (5, 10.0, 1.0, 0)]:
        with pytest.raises(ValueError):
            fps_indices(*bad)
    with pytest.raises(ValueError, match="rounding must be round or floor"):
        fps_indices(5, 10.0, 1.0, 4, "ceil")


def test_config_picks_the_sampling_rule():
    uniform = FramesConfig(**VALID)
    fps = FramesConfig(**{**VALID, "sampling": "fps", "sample_fps": 2.0, "num_frames": 4})
    assert uniform.clip_indices(30, 10.0) == uniform_indices(30, 12)
    assert fps.clip_indices(30, 10.0) == fps_indices(30, 10.0, 2.0, 4) == [0, 5, 15, 25]
    floor = FramesConfig(**{**VALID, "sampling": "fps", "fps_stride": "floor", "max_seconds": 2.0, "num_frames": 50})
    assert floor.clip_indices(300, 30.0) == fps_indices(300, 30.0, 1.0, 50, "floor", 2.0) == [0, 30]


def test_timestamps():
    assert timestamps([0, 5, 29], 10.0) == [0.0, 0.5, 2.9]
    assert timestamps([3], 25) == [3 / 25]
    with pytest.raises(ValueError):
        timestamps([1], 0.0)


@pytest.mark.parametrize("height,width,size", [
    (240, 320, 224), (320, 240, 224), (96, 96, 64), (33, 97, 16), (97, 33, 16), (50, 70, 224),
    (31, 64, 31), (360, 640, 224),
])
def test_clip_frame_equals_clip_preprocessing_geometry(height, width, size):
    """Same pixels as CLIP's own Resize(S, BICUBIC) + CenterCrop(S) on a PIL image."""
    from torchvision import transforms

    rng = np.random.default_rng(height * 1000 + width)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    reference = transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
    ])(Image.fromarray(frame))
    got = clip_frame(frame, size)
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.asarray(reference))


def test_clip_frame_keeps_the_centre_of_a_wide_frame():
    frame = np.zeros((32, 96, 3), np.uint8)
    frame[:, :32] = (255, 0, 0)
    frame[:, 32:64] = (0, 255, 0)
    frame[:, 64:] = (0, 0, 255)
    crop = clip_frame(frame, 16).astype(int)  # 32x96 -> 16x48, crop columns 16..31 = the centre
    inner = crop[:, 2:-2]  # bicubic blends the band edges over ~2 px
    assert (inner[..., 1] > 240).all() and (inner[..., [0, 2]] < 15).all()


@pytest.mark.parametrize("width,height,max_side,want", [
    (640, 480, 336, (336, 252)), (480, 640, 336, (252, 336)), (96, 96, 336, (96, 96)),
    (336, 100, 336, (336, 100)), (1000, 3, 100, (100, 1)), (1920, 1080, 336, (336, 189)),
])
def test_vlm_size_caps_the_longer_side_and_never_upscales(width, height, max_side, want):
    assert vlm_size(width, height, max_side) == want


def test_vlm_jpeg_size_and_content():
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[:] = (200, 40, 90)
    data = vlm_jpeg(frame, 50, 90)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (50, 30)
    assert np.abs(np.asarray(image).astype(int) - (200, 40, 90)).max() <= 4
    assert Image.open(io.BytesIO(vlm_jpeg(frame, 500, 90))).size == (100, 60)
    noisy = np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    assert len(vlm_jpeg(noisy, 100, 20)) < len(vlm_jpeg(noisy, 100, 95))


def test_config_accepts_valid_values():
    config = FramesConfig(**VALID)
    assert config.num_frames == 12 and config.on_error == "raise"
    with pytest.raises(AttributeError):
        config.workers = 3  # frozen


@pytest.mark.parametrize("key,value", [
    ("num_frames", 0), ("image_size", -1), ("vlm_num_frames", 0), ("vlm_max_side", 0),
    ("workers", 0), ("jpeg_quality", 0), ("jpeg_quality", 96), ("num_frames", True),
    ("image_size", 64.0), ("on_error", "ignore"), ("sampling", "random"), ("sample_fps", 0.0),
    ("sample_fps", -1.0), ("padding", "noise"), ("fps_stride", "ceil"), ("max_seconds", 0.0),
])
def test_config_rejects_bad_values_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        FramesConfig(**{**VALID, key: value})


def test_config_loads_strictly_from_params(tmp_path):
    import yaml

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"frames": VALID}))
    assert load_section(FramesConfig, "frames", params) == FramesConfig(**VALID)
    params.write_text(yaml.safe_dump({"frames": {**VALID, "fps": 3}}))
    with pytest.raises(ConfigError, match="unknown key 'fps'"):
        load_section(FramesConfig, "frames", params)
    params.write_text(yaml.safe_dump({"frames": {k: v for k, v in VALID.items() if k != "workers"}}))
    with pytest.raises(ConfigError, match="missing key 'workers'"):
        load_section(FramesConfig, "frames", params)
    assert leaf_keys(FramesConfig) == list(VALID)
