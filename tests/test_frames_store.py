"""FrameStore round trips (incl. several VLM row groups) and the ``stages.frames`` CLI."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import pipeline.frames.extract as extract_module
from pipeline.frames import FramesConfig, FrameStore, extract_frames
from pipeline.io import write_parquet
from pipeline.videoio import write_video

CONFIG = dict(sampling="uniform", sample_fps=1.0, fps_stride="round", max_seconds=None, num_frames=4, image_size=16,
              padding="zero", vlm_num_frames=2,
              vlm_max_side=32, jpeg_quality=90, workers=2, on_error="skip")


def video(path: Path, shade: int, num_frames: int = 6) -> Path:
    """A flat video whose green level identifies it and red level identifies the frame."""
    frames = np.zeros((num_frames, 32, 64, 3), np.uint8)
    frames[..., 1] = shade
    frames[..., 0] = (10 + 30 * np.arange(num_frames))[:, None, None]
    write_video(path, frames, 10)
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("videos")
    rows = [{"video_id": f"v{k}", "path": str(video(root / f"v{k}.mp4", 20 + 40 * k)), "split": "train"}
            for k in range(5)]
    rows.insert(2, {"video_id": "gone", "path": str(root / "gone.mp4"), "split": "val"})
    return root, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def store(library, tmp_path_factory) -> FrameStore:
    out = tmp_path_factory.mktemp("store") / "frames"
    patch = pytest.MonkeyPatch()
    patch.setattr(extract_module, "VLM_GROUP_VIDEOS", 2)  # several row groups from 5 videos
    try:
        extract_frames(FramesConfig(**CONFIG), library[1], out)
    finally:
        patch.undo()
    return FrameStore(out)


def test_store_maps_ids_to_rows_and_frames(store):
    assert store.video_ids == ["v0", "v1", "v2", "v3", "v4"]
    assert [store.row(f"v{k}") for k in range(5)] == list(range(5))
    assert store.num_frames == 4 and store.image_size == 16
    for k in range(5):
        frames, mask = store.clip(f"v{k}")
        assert mask.all() and frames.shape == (4, 16, 16, 3)
        assert np.abs(frames[..., 1].astype(int) - (20 + 40 * k)).max() <= 4
        np.testing.assert_array_equal(frames, store.clip_frames[k])
    assert isinstance(store.clip_frames, np.memmap) and not store.clip_frames.flags.writeable


def test_vlm_lookup_across_row_groups(store):
    import pyarrow.parquet as pq

    assert pq.ParquetFile(store.path / "vlm_frames.parquet").metadata.num_row_groups == 3
    for k in [4, 0, 3, 1, 2, 0]:  # random access, revisiting groups
        frames = store.vlm_frames(f"v{k}")
        assert [f.frame_index for f in frames] == [0, 1]
        assert [f.source_index for f in frames] == [1, 4]  # floor((i + 0.5) * 6 / 2)
        for f in frames:
            pixels = np.asarray(Image.open(io.BytesIO(f.jpeg)).convert("RGB")).astype(int)
            assert np.abs(pixels[..., 1].mean() - (20 + 40 * k)) <= 4
            assert np.abs(pixels[..., 0].mean() - (10 + 30 * f.source_index)) <= 4
    streamed = list(store.iter_vlm())
    assert [video_id for video_id, _ in streamed] == store.video_ids
    assert all(frames == store.vlm_frames(video_id) for video_id, frames in streamed)


def test_store_errors_name_the_video_or_file(store, tmp_path):
    with pytest.raises(KeyError, match="'gone' was skipped: .*missing file"):
        store.row("gone")
    with pytest.raises(KeyError, match="'nope' is not in the index"):
        store.vlm_frames("nope")
    broken = tmp_path / "frames"
    shutil.copytree(store.path, broken)
    (broken / "clip_mask.npy").unlink()
    with pytest.raises(FileNotFoundError, match="clip_mask.npy"):
        FrameStore(broken)
    np.save(broken / "clip_mask.npy", np.ones((4, 4), bool))  # one row short
    with pytest.raises(ValueError, match="inconsistent"):
        FrameStore(broken)


def test_store_needs_only_the_clip_arrays_and_index(store, tmp_path):
    """Readers of CLIP frames need index + clip arrays: no VLM frames, no summary (older
    directories: padding defaults to zero); ok, rows and padding are read from them."""
    minimal = tmp_path / "frames"
    minimal.mkdir()
    for name in ("clip_frames.npy", "clip_mask.npy", "index.parquet"):
        shutil.copy(store.path / name, minimal / name)
    small = FrameStore(minimal)
    assert small.padding == "zero" and small.summary == {}
    assert small.ok["video_id"].tolist() == store.video_ids and small.ok["row"].tolist() == list(range(5))
    assert list(small.ok.columns) == ["video_id", "row", "split"]
    np.testing.assert_array_equal(small.rows(["v3", "v0", "v3"]), [3, 0, 3])
    assert small.rows([]).dtype == np.int64 and len(small.rows([])) == 0
    with pytest.raises(KeyError, match="'gone' was skipped"):
        small.rows(["v1", "gone"])
    (minimal / "summary.json").write_text(json.dumps({"padding": "blank"}))
    assert FrameStore(minimal).padding == "blank"
    (minimal / "summary.json").write_text(json.dumps({"padding": "noise"}))
    with pytest.raises(ValueError, match="unknown padding 'noise'"):
        FrameStore(minimal)


REPO = Path(__file__).resolve().parents[1]


def stage_args(tmp_path: Path, videos: pd.DataFrame, **overrides) -> tuple[list[str], Path]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"frames": {**CONFIG, **overrides}, "other": {"x": 1}}))
    write_parquet(videos, tmp_path / "videos.parquet")
    out = tmp_path / "out" / "frames"
    args = ["--params", str(params), "--videos", str(tmp_path / "videos.parquet"), "--out", str(out),
            "--metrics", str(tmp_path / "metrics.json")]
    return args, out


def test_stage_module_writes_the_frames_dir(library, tmp_path):
    args, out = stage_args(tmp_path, library[1])
    result = subprocess.run([sys.executable, "-m", "stages.frames", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "5 ok, 1 skipped" in result.stdout and "skipping video 'gone'" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((tmp_path / "metrics.json").read_text()) == summary
    assert FrameStore(out).video_ids == [f"v{k}" for k in range(5)]


def test_stage_cli_fails_cleanly_on_a_bad_video(library, tmp_path):
    from stages.frames import app

    args, out = stage_args(tmp_path, library[1], on_error="raise")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "'gone'" in result.output and "gone.mp4: missing file" in result.output
    assert not out.exists() and not (tmp_path / "metrics.json").exists()
