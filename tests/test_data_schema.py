"""The videos/captions table contract: validation errors and Parquet round trips."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.data.schema import (
    CAPTIONS_SCHEMA,
    VIDEOS_SCHEMA,
    SchemaError,
    read_captions,
    read_videos,
    validate_captions,
    validate_videos,
    write_captions,
    write_videos,
)
from pipeline.io import write_parquet


def videos_df() -> pd.DataFrame:
    return pd.DataFrame({
        "video_id": ["a", "b", "c"],
        "path": ["v/a.mp4", "v/b.mp4", "/abs/c.mp4"],
        "split": ["train", "val", "test"],
        "duration": [2.0, 3.5, 1],  # an int is a valid float
        "fps": [10.0, 25.0, 29.97],
        "num_frames": [20, 87, 30],
        "width": [96, 320, 16],
        "height": [96, 240, 16],
        "dataset": ["synthetic"] * 3,
    })


def captions_df() -> pd.DataFrame:
    return pd.DataFrame({
        "caption_id": ["a#0", "a#1", "b#0", "c#0"],
        "video_id": ["a", "a", "b", "c"],
        "split": ["train", "train", "val", "test"],
        "caption_index": [0, 1, 0, 0],
        "text": ["a red circle", "it moves", "x", "a paragraph. two sentences."],
    })


def test_valid_tables_come_back_canonical():
    shuffled = videos_df()[list(reversed(VIDEOS_SCHEMA.names))]
    out = validate_videos(shuffled)
    assert list(out.columns) == VIDEOS_SCHEMA.names
    assert out["duration"].dtype == "float64" and out["num_frames"].dtype == "int64"
    assert out["duration"].tolist() == [2.0, 3.5, 1.0]
    caps = validate_captions(captions_df(), out)
    assert list(caps.columns) == CAPTIONS_SCHEMA.names
    assert caps["caption_index"].dtype == "int64"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns="fps"), "missing column"),
    (lambda d: d.assign(extra=1), "unexpected column"),
    (lambda d: d.assign(video_id=["a", "a", "c"]), "duplicate id"),
    (lambda d: d.assign(split=["train", "valid", "test"]), "unknown split name(s) ['valid']"),
    (lambda d: d.assign(duration=[2.0, 0.0, 1.0]), "videos.duration: must be finite and > 0"),
    (lambda d: d.assign(fps=[10.0, float("nan"), 1.0]), "null"),
    (lambda d: d.assign(num_frames=[20.0, 87.0, 30.5]), "videos.num_frames: expected integers"),
    (lambda d: d.assign(path=["v/a.mp4", " ", "c"]), "videos.path: empty value for 'b'"),
    (lambda d: d.assign(video_id=["a", 2, "c"]), "videos.video_id: expected strings"),
])
def test_videos_errors(mutate, message):
    with pytest.raises(SchemaError) as err:
        validate_videos(mutate(videos_df()))
    assert message in str(err.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns="text"), "missing column"),
    (lambda d: d.assign(caption_id=["a#0", "a#0", "b#0", "c#0"]), "duplicate id(s) 'a#0'"),
    (lambda d: d.assign(split=["train", "train", "val", "dev"]), "unknown split"),
    (lambda d: d.assign(text=["a", "", "b", "c"]), "captions.text: empty value for 'a#1'"),
    (lambda d: d.assign(caption_index=[0, 0, 0, 0]), "repeated within a video: 'a#0'"),
    (lambda d: d.assign(caption_index=[0, -1, 0, 0]), "negative"),
    (lambda d: d.assign(video_id=["a", "a", "b", "zzz"]), "unknown video(s) 'zzz'"),
    (lambda d: d.assign(split=["train", "test", "val", "test"]), "differs from the video's split for 'a#1'"),
    (lambda d: d[d.video_id != "b"], "videos without any caption: 'b'"),
])
def test_captions_errors(mutate, message):
    videos = validate_videos(videos_df())
    with pytest.raises(SchemaError) as err:
        validate_captions(mutate(captions_df()), videos)
    assert message in str(err.value)


def test_captions_without_videos_skip_cross_checks():
    caps = captions_df().assign(video_id=["a", "a", "b", "zzz"])
    assert len(validate_captions(caps)) == 4


def test_parquet_round_trip_keeps_schema(tmp_path):
    videos, captions = videos_df(), captions_df()
    write_videos(videos, tmp_path / "videos.parquet")
    write_captions(captions, tmp_path / "captions.parquet", validate_videos(videos))
    assert pq.read_schema(tmp_path / "videos.parquet").remove_metadata().equals(VIDEOS_SCHEMA)
    assert pq.read_schema(tmp_path / "captions.parquet").remove_metadata().equals(CAPTIONS_SCHEMA)
    back_v = read_videos(tmp_path / "videos.parquet")
    back_c = read_captions(tmp_path / "captions.parquet", back_v)
    pd.testing.assert_frame_equal(back_v, validate_videos(videos))
    pd.testing.assert_frame_equal(back_c, validate_captions(captions))
    assert back_v["duration"].tolist() == [2.0, 3.5, 1.0]
    assert back_c["text"].tolist() == captions["text"].tolist()


def test_read_names_the_file(tmp_path):
    write_parquet(videos_df().drop(columns="height"), tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match=r"bad\.parquet: videos: missing column\(s\) \['height'\]"):
        read_videos(tmp_path / "bad.parquet")


def test_write_refuses_invalid_table(tmp_path):
    with pytest.raises(SchemaError):
        write_videos(videos_df().assign(split="train ", video_id=["a", "b", "c"]), tmp_path / "v.parquet")
    assert not (tmp_path / "v.parquet").exists()
