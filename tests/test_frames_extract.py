"""extract_frames on tiny generated videos: pixels, geometry, VLM JPEGs, errors, atomicity."""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.frames import FramesConfig, FramesError, FrameStore, extract_frames
from pipeline.frames.transforms import clip_frame
from pipeline.videoio import write_video

TOL = 6  # H.264 (crf 18, 4:2:0) error on flat colours is ~1-2 levels


def expected_indices(total: int, samples: int) -> list[int]:
    """The documented formula, recomputed exactly: floor((i + 1/2) T / N), or all T when T < N."""
    if total < samples:
        return list(range(total))
    return [math.floor((i + Fraction(1, 2)) * total / samples) for i in range(samples)]


def colour(t: int, base: int = 0) -> np.ndarray:
    """A flat RGB colour encoding frame number ``t`` (R steps by 8) and the video (``base``)."""
    return np.array([4 + 8 * t, 40 + 50 * base, 220 - 8 * t], dtype=np.uint8)


def ramp_video(path: Path, num_frames: int, height: int = 48, width: int = 64, fps: int = 10,
               base: int = 0) -> Path:
    frames = np.stack([np.broadcast_to(colour(t, base), (height, width, 3)) for t in range(num_frames)])
    write_video(path, frames, fps)
    return path


def pyav_frames(path: Path) -> np.ndarray:
    """All frames of ``path`` decoded by PyAV, an independent decoder (same FFmpeg RGB output)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def identify(frame: np.ndarray, base: int = 0, max_t: int = 27) -> int:
    """Which ramp frame a decoded (and resized) frame shows: the nearest colour, within TOL."""
    mean = frame.reshape(-1, 3).mean(axis=0)
    errors = [np.abs(mean - colour(t, base)).max() for t in range(max_t)]
    best = int(np.argmin(errors))
    assert errors[best] <= TOL, (mean, colour(best, base))
    return best


def config(**overrides) -> FramesConfig:
    values = dict(sampling="uniform", sample_fps=1.0, fps_stride="round", max_seconds=None, num_frames=12,
                  image_size=16, padding="zero",
                  vlm_num_frames=8, vlm_max_side=40, jpeg_quality=90, workers=2, on_error="raise")
    return FramesConfig(**{**values, **overrides})


def table(*rows: tuple[str, Path | str]) -> pd.DataFrame:
    return pd.DataFrame([{"video_id": v, "path": str(p), "split": "test"} for v, p in rows])


@pytest.fixture(scope="module")
def ramps(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """Videos of 27, 12 and 5 frames (T > N, T == N, T < N for N = 12), distinct per video."""
    root = tmp_path_factory.mktemp("ramps")
    return {name: (ramp_video(root / f"{name}.mp4", length, base=base), length)
            for base, (name, length) in enumerate([("long", 27), ("exact", 12), ("short", 5)])}


@pytest.fixture(scope="module")
def ramp_store(ramps, tmp_path_factory) -> FrameStore:
    out = tmp_path_factory.mktemp("frames") / "frames"
    extract_frames(config(), table(*[(name, path) for name, (path, _) in ramps.items()]), out)
    return FrameStore(out)


def test_clip_frames_are_the_sampled_frames_in_order(ramps, ramp_store):
    for base, (name, (_, length)) in enumerate(ramps.items()):
        frames, mask = ramp_store.clip(name)
        want = expected_indices(length, 12)
        real = len(want)
        assert [identify(f, base) for f in frames[:real]] == want
        assert mask.tolist() == [True] * real + [False] * (12 - real)
        assert not frames[real:].any()  # padding is black
        row = ramp_store.index.set_index("video_id").loc[name]
        assert row["frame_indices"].tolist() == want and row["source_frames"] == length
    assert ramp_store.summary == {"videos": 3, "ok": 3, "skipped": 0, "padded": 1, "num_frames": 12,
                                  "image_size": 16, "sampling": "uniform", "sample_fps": 1.0, "fps_stride": "round",
                                  "max_seconds": None, "padding": "zero",
                                  "vlm_frames": 8 + 8 + 5, "vlm_bytes": ramp_store.summary["vlm_bytes"]}
    assert ramp_store.padding == "zero"


def test_files_follow_the_contract(ramp_store):
    path = ramp_store.path
    clip = np.load(path / "clip_frames.npy", mmap_mode="r")
    mask = np.load(path / "clip_mask.npy", mmap_mode="r")
    assert clip.dtype == np.uint8 and clip.shape == (3, 12, 16, 16, 3)
    assert mask.dtype == np.bool_ and mask.shape == (3, 12)
    index = pd.read_parquet(path / "index.parquet")
    assert list(index.columns) == ["video_id", "row", "split", "status", "error", "source_frames",
                                   "frame_indices"]
    assert index["video_id"].tolist() == ["long", "exact", "short"] and index["row"].tolist() == [0, 1, 2]
    assert (index["status"] == "ok").all() and (index["error"] == "").all()
    vlm = pd.read_parquet(path / "vlm_frames.parquet")
    assert list(vlm.columns) == ["video_id", "frame_index", "source_index", "timestamp", "jpeg"]
    assert sorted(os.listdir(path)) == sorted(["clip_frames.npy", "clip_mask.npy", "vlm_frames.parquet",
                                               "index.parquet", "summary.json"])


def test_vlm_frames_count_order_timestamps_and_pixels(ramps, ramp_store):
    for base, (name, (_, length)) in enumerate(ramps.items()):
        frames = ramp_store.vlm_frames(name)
        want = expected_indices(length, 8)
        assert [f.frame_index for f in frames] == list(range(len(want)))
        assert [f.source_index for f in frames] == want
        assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in want])
        for frame in frames:
            image = Image.open(io.BytesIO(frame.jpeg))
            assert image.format == "JPEG" and image.size == (40, 30)  # 64x48 capped at 40
            assert identify(np.asarray(image.convert("RGB")), base) == frame.source_index
        assert ramp_store.vlm_jpegs(name) == [f.jpeg for f in frames]


def test_geometry_and_vlm_size_follow_the_source_aspect(tmp_path):
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, :32], wide[:, 32:64], wide[:, 64:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))  # bands top / middle / bottom
    write_video(tmp_path / "wide.mp4", np.stack([wide] * 4), 25)
    write_video(tmp_path / "tall.mp4", np.stack([tall] * 4), 25)
    out = tmp_path / "frames"
    extract_frames(config(num_frames=2, vlm_num_frames=2, vlm_max_side=48, workers=1),
                   table(("wide", tmp_path / "wide.mp4"), ("tall", tmp_path / "tall.mp4")), out)
    store = FrameStore(out)
    for name in ("wide", "tall"):
        frames, _ = store.clip(name)
        inner = frames[:, 3:-3, 3:-3].astype(int)  # bicubic/chroma blur at the band edges
        assert (inner[..., 1] > 230).all() and (inner[..., [0, 2]] < 25).all(), name
        source = pyav_frames(tmp_path / f"{name}.mp4")[[1, 3]]
        np.testing.assert_array_equal(frames, np.stack([clip_frame(f, 16) for f in source]))
    sizes = {name: Image.open(io.BytesIO(store.vlm_jpegs(name)[0])).size for name in ("wide", "tall")}
    assert sizes == {"wide": (48, 16), "tall": (16, 48)}


def test_vlm_frames_are_never_upscaled_and_timestamps_use_fps(tmp_path):
    path = ramp_video(tmp_path / "v.mp4", 20, height=32, width=64, fps=25)
    out = tmp_path / "frames"
    extract_frames(config(vlm_max_side=1000, vlm_num_frames=4), table(("v", path)), out)
    frames = FrameStore(out).vlm_frames("v")
    assert {Image.open(io.BytesIO(f.jpeg)).size for f in frames} == {(64, 32)}
    assert [f.timestamp for f in frames] == pytest.approx([i / 25 for i in expected_indices(20, 4)])


def test_narrow_width_decord_bug_is_worked_around(tmp_path):
    """decord 0.6 fails get_batch on 48 px wide videos; frames must still be exact, unshifted."""
    source = np.zeros((15, 32, 48, 3), np.uint8)
    source[..., 0] = 5 * np.arange(48)  # a horizontal ramp: a one-pixel shift changes R by 5
    source[..., 1] = (4 + 8 * np.arange(15))[:, None, None]
    source[..., 2] = 100
    write_video(tmp_path / "narrow.mp4", source, 10)
    out = tmp_path / "frames"
    extract_frames(config(image_size=32), table(("n", tmp_path / "narrow.mp4")), out)
    frames, mask = FrameStore(out).clip("n")
    assert mask.all()
    reference = pyav_frames(tmp_path / "narrow.mp4")[expected_indices(15, 12)]
    np.testing.assert_array_equal(frames, np.stack([clip_frame(f, 32) for f in reference]))


def test_fps_sampling_takes_the_official_frames_and_records_how(ramps, tmp_path):
    """fps mode at 2 frames/s of 10 fps ramps: every 5th frame from 0, subsampled to N by
    linspace when there are more; summary.json and the store record sampling and padding."""
    out = tmp_path / "frames"
    videos = table(*[(name, path) for name, (path, _) in ramps.items()])
    summary = extract_frames(config(sampling="fps", sample_fps=2.0, num_frames=4, padding="blank"), videos, out)
    store = FrameStore(out)
    want = {"long": [0, 5, 15, 25],  # candidates 0, 5, .., 25 (6 > 4): linspace(0, 5, 4) -> 0, 1, 3, 5
            "exact": [0, 5, 10],     # 3 candidates <= 4: all kept, one slot padded
            "short": [0]}
    for base, name in enumerate(ramps):
        frames, mask = store.clip(name)
        assert [identify(f, base) for f in frames[: len(want[name])]] == want[name], name
        assert mask.tolist() == [True] * len(want[name]) + [False] * (4 - len(want[name]))
        assert store.index.set_index("video_id").loc[name, "frame_indices"].tolist() == want[name]
    assert (summary["sampling"], summary["sample_fps"], summary["padding"]) == ("fps", 2.0, "blank")
    assert summary["padded"] == 2 and store.padding == "blank"


def test_parallel_and_serial_runs_write_identical_files(ramps, ramp_store, tmp_path):
    out = tmp_path / "serial"
    extract_frames(config(workers=1), table(*[(n, p) for n, (p, _) in ramps.items()]), out)
    for name in ("clip_frames.npy", "clip_mask.npy", "vlm_frames.parquet", "index.parquet", "summary.json"):
        assert (out / name).read_bytes() == (ramp_store.path / name).read_bytes(), name


def test_relative_paths_resolve_against_root(tmp_path):
    ramp_video(tmp_path / "videos" / "a.mp4", 6)
    out = tmp_path / "frames"
    summary = extract_frames(config(), table(("a", "videos/a.mp4")), out, root=tmp_path)
    assert summary["ok"] == 1


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Broken inputs and the cause their error must name."""
    import av

    root = tmp_path_factory.mktemp("bad")
    good = ramp_video(root / "good.mp4", 20).read_bytes()
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    (root / "truncated.mp4").write_bytes(good[: len(good) * 6 // 10])  # index (moov) cut off
    # moov first, then the frame data cut short: opens, then decoding fails
    noise = np.random.default_rng(1).integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    with av.open(str(root / "faststart.mp4"), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("h264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in noise:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = (root / "faststart.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    (root / "folder.mp4").mkdir()
    return {
        "missing": (root / "missing.mp4", "missing file"),
        "empty": (root / "empty.mp4", "empty file"),
        "random": (root / "random.mp4", "corrupt"),
        "truncated": (root / "truncated.mp4", "corrupt"),
        "cut": (root / "cut.mp4", "corrupt"),
        "folder": (root / "folder.mp4", "not a regular file"),
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "truncated", "cut", "folder"])
def test_bad_video_raises_naming_file_and_cause(kind, bad_videos, ramps, tmp_path):
    path, cause = bad_videos[kind]
    out = tmp_path / "frames"
    videos = table(("good", ramps["long"][0]), (kind, path), ("also_good", ramps["exact"][0]))
    with pytest.raises(FramesError) as info:
        extract_frames(config(), videos, out)
    assert str(path) in str(info.value) and cause in str(info.value) and repr(kind) in str(info.value)
    assert os.listdir(tmp_path) == []  # no output and no temporary directory


def test_skip_records_and_counts_bad_videos(bad_videos, ramps, tmp_path):
    rows = [("long", ramps["long"][0])]
    rows += [(kind, path) for kind, (path, _) in bad_videos.items()]
    rows += [("short", ramps["short"][0])]
    out = tmp_path / "frames"
    summary = extract_frames(config(on_error="skip"), table(*rows), out)
    assert summary["ok"] == 2 and summary["skipped"] == len(bad_videos) and summary["videos"] == len(rows)
    store = FrameStore(out)
    index = store.index.set_index("video_id")
    assert index["row"].to_dict() == {"long": 0, "short": 1, **{k: -1 for k in bad_videos}}
    for kind, (path, cause) in bad_videos.items():
        assert index.loc[kind, "status"] == "skipped" and cause in index.loc[kind, "error"]
        assert str(path) in index.loc[kind, "error"] and len(index.loc[kind, "frame_indices"]) == 0
    assert store.clip_frames.shape[0] == 2 and store.clip_mask.shape == (2, 12)
    assert [identify(f, 0) for f in store.clip("long")[0]] == expected_indices(27, 12)
    assert [identify(f, 2) for f in store.clip("short")[0][:5]] == list(range(5))
    assert store.clip_mask[1].sum() == 5
    with pytest.raises(KeyError, match="skipped: .*missing file"):
        store.clip("missing")


def test_all_videos_failing_is_an_error(bad_videos, tmp_path):
    out = tmp_path / "frames"
    videos = table(*[(kind, path) for kind, (path, _) in bad_videos.items()])
    with pytest.raises(FramesError, match="all 6 videos failed"):
        extract_frames(config(on_error="skip"), videos, out)
    assert os.listdir(tmp_path) == []


def test_failed_rerun_keeps_the_previous_output(bad_videos, ramps, tmp_path):
    out = tmp_path / "frames"
    extract_frames(config(), table(("long", ramps["long"][0])), out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    with pytest.raises(FramesError):
        extract_frames(config(), table(("short", ramps["short"][0]), ("bad", bad_videos["random"][0])), out)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["frames"]


@pytest.mark.parametrize("videos,match", [
    (pd.DataFrame({"video_id": ["a"], "path": ["a.mp4"]}), "lacks column"),
    (pd.DataFrame({"video_id": [], "path": [], "split": []}), "empty"),
    (pd.DataFrame({"video_id": ["a", "a"], "path": ["x", "y"], "split": ["test"] * 2}), "duplicate"),
])
def test_bad_videos_table_is_rejected(videos, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        extract_frames(config(), videos, tmp_path / "frames")
    assert os.listdir(tmp_path) == []
