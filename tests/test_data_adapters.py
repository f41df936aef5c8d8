"""MSR-VTT, DiDeMo and ActivityNet adapters on tiny real-format annotation files, plus probing
and file lookup. Every video here is one 16x16, 5-frame clip copied under different names.

The adapters read their files through ``prepare.source`` (annotation file names relative to
``source.annotations``, videos under ``source.videos``) and ``prepare.datasets.<name>``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.data.common import DatasetError
from pipeline.data.datasets import DATASETS, SourceConfig
from pipeline.data.locate import VideoIndex
from pipeline.data.prepare import PrepareConfig, PrepareError, prepare
from pipeline.data.probe import VideoProbeError, probe_video
from pipeline.data.schema import read_captions, read_videos
from pipeline.io import read_json
from pipeline.videoio import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    write_video(path, frames, fps=5)
    return path


def place(clip: Path, *paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, p)


def config(dataset: str, on_missing: str = "raise", absolute: bool = False, **section) -> PrepareConfig:
    """A PrepareConfig for ``dataset`` from a fixture's absolute paths: the annotation files'
    folder becomes ``source.annotations`` and the files are named relative to it (or given
    absolute with ``absolute``); ``video_dir`` becomes ``source.videos``."""
    videos = section.pop("video_dir")
    folders = {Path(p).parent for p in section.values() if p}
    assert len(folders) == 1, folders
    files = {k: (p if absolute or not p else Path(p).name) for k, p in section.items()}
    source = SourceConfig(annotations=str(folders.pop() if not absolute else "/nonexistent"), videos=videos)
    params = DATASETS.get(dataset).params_type(**files)
    return PrepareConfig(dataset=dataset, on_missing=on_missing, source=source, datasets={dataset: params})


def put(key: str, text: str):
    """A damage for the parametrized error tests: overwrite the file at config key ``key``."""
    return lambda section: Path(section[key]).write_text(text)


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


# --- MSR-VTT ---------------------------------------------------------------------------------

@pytest.fixture()
def msrvtt(tmp_path, clip) -> dict:
    root = tmp_path / "msrvtt"
    videos = root / "videos"
    place(clip, videos / "all/video0.mp4", videos / "all/video1.mp4", videos / "video2.mp4",
          videos / "video9.mp4")
    sentences = []
    for v in (0, 1, 2, 9):
        for k in (2, 0, 1):  # shuffled sen_ids: captions must come out in sen_id order
            sentences.append({"caption": f" caption {k} of video{v} ", "video_id": f"video{v}",
                              "sen_id": 100 * v + k})
    data_json = write_json(root / "MSRVTT_data.json",
                           {"videos": [{"video_id": f"video{v}"} for v in (0, 1, 2, 9)],
                            "sentences": sentences})
    (root / "train_list_jsfusion.txt").write_text("video0\nvideo1\n\nvideo2\n")
    with (root / "MSRVTT_JSFUSION_test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerow(["ret0", "msr9", "video9", "a man is talking"])
    return dict(data_json=data_json, train_list=str(root / "train_list_jsfusion.txt"),
                test_csv=str(root / "MSRVTT_JSFUSION_test.csv"), video_dir=str(videos))


def test_msrvtt_tables(tmp_path, msrvtt):
    videos, captions = prepare(config("msrvtt", **msrvtt), tmp_path / "out")
    assert videos["video_id"].tolist() == ["video0", "video1", "video2", "video9"]
    assert videos["split"].tolist() == ["train"] * 3 + ["test"]
    assert videos["path"].iloc[0] == str(Path(msrvtt["video_dir"]) / "all/video0.mp4")
    assert (videos["num_frames"] == 5).all() and (videos["width"] == 16).all()
    assert (videos["fps"] == 5.0).all() and np.allclose(videos["duration"], 1.0)
    assert (videos["dataset"] == "msrvtt").all()
    train = captions[captions.video_id == "video1"]
    assert train["text"].tolist() == [f"caption {k} of video1" for k in (0, 1, 2)]
    assert train["caption_id"].tolist() == ["video1#0", "video1#1", "video1#2"]
    test = captions[captions.split == "test"]
    assert test[["caption_id", "video_id", "text"]].values.tolist() == [
        ["video9#0", "video9", "a man is talking"]]
    assert read_videos(tmp_path / "out/videos.parquet").equals(videos)
    assert read_captions(tmp_path / "out/captions.parquet", videos).equals(captions)
    assert not (tmp_path / "out/synthetic_truth.json").exists()


def test_msrvtt_train_csv_equals_txt(tmp_path, msrvtt):
    csv_path = Path(msrvtt["train_list"]).with_name("MSRVTT_train.9k.csv")
    csv_path.write_text("video_id,extra\nvideo0,x\nvideo1,y\nvideo2,z\n")
    _, a = prepare(config("msrvtt", **msrvtt), tmp_path / "a")
    _, b = prepare(config("msrvtt", **{**msrvtt, "train_list": str(csv_path)}), tmp_path / "b")
    assert a.equals(b)


def test_annotation_files_may_be_absolute(tmp_path, msrvtt):
    """Absolute file names in prepare.datasets.<name> ignore source.annotations."""
    _, relative = prepare(config("msrvtt", **msrvtt), tmp_path / "a")
    _, absolute = prepare(config("msrvtt", absolute=True, **msrvtt), tmp_path / "b")
    assert relative.equals(absolute)
    source = SourceConfig(annotations="ann", videos="vid")
    assert source.annotation("x.json") == str(Path("ann/x.json")) and source.annotation("/abs/x.json") == "/abs/x.json"
    assert source.annotation("") == ""  # an empty name stays empty (DiDeMo's optional val split)
    with pytest.raises(ValueError, match="source.videos must name a folder"):
        SourceConfig(annotations="ann", videos=" ")


def test_msrvtt_missing_video_raise_or_skip(tmp_path, msrvtt):
    (Path(msrvtt["video_dir"]) / "all/video1.mp4").unlink()
    with pytest.raises(PrepareError) as err:
        prepare(config("msrvtt", **msrvtt), tmp_path / "out")
    assert "video1 (train): no file named 'video1'" in str(err.value)
    assert "on_missing: skip" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
    videos, captions = prepare(config("msrvtt", on_missing="skip", **msrvtt), tmp_path / "out")
    assert "video1" not in set(videos.video_id) and "video1" not in set(captions.video_id)
    summary = read_json(tmp_path / "out/summary.json")
    assert summary["skipped_count"] == {"train": 1}
    assert summary["skipped"][0]["video_id"] == "video1"
    assert summary["videos"] == {"train": 2, "test": 1} and summary["captions"] == {"train": 6, "test": 1}


def test_msrvtt_unreadable_video(tmp_path, msrvtt):
    (Path(msrvtt["video_dir"]) / "video2.mp4").write_bytes(b"not a video at all")
    with pytest.raises(PrepareError, match=r"video2 \(train\): .*video2\.mp4: unreadable video"):
        prepare(config("msrvtt", **msrvtt), tmp_path / "out")
    videos, _ = prepare(config("msrvtt", on_missing="skip", **msrvtt), tmp_path / "out")
    assert "video2" not in set(videos.video_id)
    assert "unreadable" in read_json(tmp_path / "out/summary.json")["skipped"][0]["reason"]


@pytest.mark.parametrize("damage, message", [
    (put("data_json", '{"sentences": [}'), "MSRVTT_data.json: malformed JSON"),
    (put("data_json", '{"videos": []}'), "expected an object with a 'sentences' list"),
    (put("train_list", "video0\nvideo0\n"), "listed twice: ['video0']"),
    (put("train_list", "video0\nvideo5\n"), "no sentences for training video 'video5'"),
    (put("train_list", "video0\nvideo9\n"), "'video9' is in both the train and test"),
    (put("test_csv", "key,video_id\nret0,video9\n"), "missing column(s) ['sentence']"),
    (lambda m: Path(m["test_csv"]).unlink(), "prepare.datasets.msrvtt.test_csv: file not found"),
    (lambda m: shutil.rmtree(m["video_dir"]), "prepare.source.videos: video directory not found"),
])
def test_msrvtt_errors(tmp_path, msrvtt, damage, message):
    damage(msrvtt)
    with pytest.raises(DatasetError) as err:
        prepare(config("msrvtt", **msrvtt), tmp_path / "out")
    assert message in str(err.value)


# --- DiDeMo ----------------------------------------------------------------------------------

def moment(video: str, text: str) -> dict:
    return {"annotation_id": 1, "description": text, "times": [[0, 1], [1, 1]], "video": video,
            "dl_link": "http://example.invalid", "num_segments": 6}


@pytest.fixture()
def didemo(tmp_path, clip) -> dict:
    root = tmp_path / "didemo"
    # json ids carry an extension or not; files have another one, or a double one
    place(clip, root / "videos/123@N00_1_aa.mov", root / "videos/sub/456@N00_2_bb.m4v",
          root / "videos/789@N00_3_cc.avi", root / "videos/999@N00_4_dd.mp4.mp4",
          root / "videos/notes.txt")
    train = write_json(root / "train_data.json", [
        moment("123@N00_1_aa.mov", "a dog runs. "), moment("456@N00_2_bb.mov", "the car stops"),
        moment("123@N00_1_aa.mov", " the dog jumps"), moment("123@N00_1_aa.mov", "dog sits"),
    ])
    val = write_json(root / "val_data.json", [moment("999@N00_4_dd.mp4", "rain falls")])
    test = write_json(root / "test_data.json", [moment("789@N00_3_cc", "a kid waves"),
                                                 moment("789@N00_3_cc", "then laughs")])
    return dict(train_json=train, val_json=val, test_json=test, video_dir=str(root / "videos"))


def test_didemo_paragraphs_and_lookup(tmp_path, didemo):
    videos, captions = prepare(config("didemo", **didemo), tmp_path / "out")
    by_id = dict(zip(videos.video_id, videos.path))
    assert by_id["123@N00_1_aa.mov"].endswith("videos/123@N00_1_aa.mov")  # exact name
    assert by_id["456@N00_2_bb.mov"].endswith("videos/sub/456@N00_2_bb.m4v")  # stem, other ext
    assert by_id["789@N00_3_cc"].endswith("videos/789@N00_3_cc.avi")  # id without extension
    assert by_id["999@N00_4_dd.mp4"].endswith("videos/999@N00_4_dd.mp4.mp4")  # double extension
    assert dict(zip(videos.video_id, videos.split)) == {
        "123@N00_1_aa.mov": "train", "456@N00_2_bb.mov": "train", "999@N00_4_dd.mp4": "val",
        "789@N00_3_cc": "test"}
    text = dict(zip(captions.video_id, captions.text))
    assert text["123@N00_1_aa.mov"] == "a dog runs. the dog jumps dog sits"  # file order, one space
    assert text["789@N00_3_cc"] == "a kid waves then laughs"
    assert (captions.caption_index == 0).all() and len(captions) == 4


def test_didemo_without_val(tmp_path, didemo):
    videos, _ = prepare(config("didemo", **{**didemo, "val_json": ""}), tmp_path / "out")
    assert set(videos.split) == {"train", "test"}


@pytest.mark.parametrize("damage, message", [
    (put("train_json", "[{]"), "train_data.json: malformed JSON"),
    (put("train_json", '{"video": "x"}'), "expected a list of moments"),
    (put("test_json", '[{"video": "x"}]'), "item [0] lacks 'video' or 'description'"),
    (put("val_json", json.dumps([moment("789@N00_3_cc", "x")])),
     "'789@N00_3_cc' is in both the val and test splits"),
    (put("val_json", json.dumps([moment("v", " ")])), "only empty descriptions"),
])
def test_didemo_errors(tmp_path, didemo, damage, message):
    damage(didemo)
    with pytest.raises(DatasetError) as err:
        prepare(config("didemo", **didemo), tmp_path / "out")
    assert message in str(err.value)


def test_didemo_missing_video_names_the_stem(tmp_path, didemo):
    Path(didemo["video_dir"], "789@N00_3_cc.avi").unlink()
    with pytest.raises(PrepareError, match=r"789@N00_3_cc \(test\): no file named '789@N00_3_cc'"):
        prepare(config("didemo", **didemo), tmp_path / "out")
    # Skipping the only test video would leave an empty split: refused.
    with pytest.raises(PrepareError, match="no usable video left in the test split"):
        prepare(config("didemo", on_missing="skip", **didemo), tmp_path / "out")


# --- ActivityNet -----------------------------------------------------------------------------

def write_mkv(path: Path, frames: int = 5) -> None:
    """A Matroska file: no frame count in its header, so probing has to count packets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("h264", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((16, 16, 3), 40 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture()
def activitynet(tmp_path, clip) -> dict:
    root = tmp_path / "anet"
    place(clip, root / "videos/v_aaa.mp4", root / "videos/ccc.webm")  # with / without "v_"
    write_mkv(root / "videos/bbb.mkv")

    def item(*sentences):
        return {"duration": 10.0, "timestamps": [[0, 1]] * len(sentences), "sentences": list(sentences)}

    train = write_json(root / "train.json", {"v_aaa": item("A man runs. ", " He stops."),
                                             "v_bbb": item("Snow falls.")})
    test = write_json(root / "val_1.json", {"v_ccc": item(" One.", "Two. ", "  ", "Three.")})
    return dict(train_json=train, test_json=test, video_dir=str(root / "videos"))


def test_activitynet_tables(tmp_path, activitynet):
    videos, captions = prepare(config("activitynet", **activitynet), tmp_path / "out")
    assert videos[["video_id", "split"]].values.tolist() == [["v_aaa", "train"], ["v_bbb", "train"],
                                                             ["v_ccc", "test"]]
    assert [Path(p).name for p in videos.path] == ["v_aaa.mp4", "bbb.mkv", "ccc.webm"]
    assert (videos.num_frames == 5).all()  # bbb.mkv counted by demuxing
    assert dict(zip(captions.video_id, captions.text)) == {
        "v_aaa": "A man runs. He stops.", "v_bbb": "Snow falls.", "v_ccc": "One. Two. Three."}
    assert captions.caption_id.tolist() == ["v_aaa#0", "v_bbb#0", "v_ccc#0"]


@pytest.mark.parametrize("damage, message", [
    (put("test_json", "[1, 2"), "val_1.json: malformed JSON"),
    (put("train_json", "[]"), "expected an object mapping video ids"),
    (put("train_json", '{"v_aaa": {"duration": 1}}'), "'v_aaa' lacks a 'sentences' list"),
    (put("train_json", '{"v_ccc": {"sentences": ["x"]}}'), "both the train and test"),
])
def test_activitynet_errors(tmp_path, activitynet, damage, message):
    damage(activitynet)
    with pytest.raises(DatasetError) as err:
        prepare(config("activitynet", **activitynet), tmp_path / "out")
    assert message in str(err.value)


def test_activitynet_skip_missing(tmp_path, activitynet):
    Path(activitynet["video_dir"], "bbb.mkv").unlink()
    with pytest.raises(PrepareError, match=r"v_bbb \(train\): no file named 'v_bbb', 'bbb'"):
        prepare(config("activitynet", **activitynet), tmp_path / "out")
    videos, captions = prepare(config("activitynet", on_missing="skip", **activitynet), tmp_path / "out")
    assert videos.video_id.tolist() == ["v_aaa", "v_ccc"] and len(captions) == 2


# --- probing and lookup ----------------------------------------------------------------------

def test_probe_errors_name_the_cause(tmp_path):
    with pytest.raises(VideoProbeError, match="nope.mp4: video file not found"):
        probe_video(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoProbeError, match="empty.mp4: video file is empty"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(VideoProbeError, match="junk.mp4: unreadable video"):
        probe_video(tmp_path / "junk.mp4")


def test_probe_matches_decoded_frames(clip, tmp_path):
    info = probe_video(clip)
    with av.open(str(clip)) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    assert (info.num_frames, info.width, info.height, info.fps) == (decoded, 16, 16, 5.0)
    assert info.duration == pytest.approx(decoded / 5.0)
    write_mkv(tmp_path / "x.mkv", frames=7)
    assert probe_video(tmp_path / "x.mkv").num_frames == 7


def test_index_prefers_mp4_and_exact_names(tmp_path):
    for name in ("a.webm", "a.mp4", "a.avi", "b.mkv", "sub/c.mp4", ".hidden.mp4", "d.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    index = VideoIndex(tmp_path)
    assert index.find(["a"]).name == "a.mp4"
    assert index.find(["a.avi"]).name == "a.avi"
    assert index.find(["zzz", "b"]).name == "b.mkv"
    assert index.find(["c"]) == tmp_path / "sub/c.mp4"
    assert index.find([".hidden"]) is None and index.find(["d"]) is None
    assert len(index) == 5
