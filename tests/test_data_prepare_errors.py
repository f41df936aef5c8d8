"""prepare's expected errors: one line naming the file and cause, exit 1, no traceback, no
partial output; with on_missing: raise, every unusable video is reported in one run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.data.common import Annotations, VideoEntry
from pipeline.data.prepare import PrepareError, assemble, prepare
from stages.prepare import app
from tests.test_data_adapters import clip, config, msrvtt  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def params_file(tmp_path: Path, section: dict, **prepare_keys) -> Path:
    files = {k: v for k, v in section.items() if k != "video_dir"}  # absolute file paths
    params = {"prepare": {
        "dataset": "msrvtt", "on_missing": "raise",
        "source": {"annotations": str(tmp_path), "videos": section["video_dir"]},
        "datasets": {
            "synthetic": {"num_videos": 2, "test_fraction": 0.5, "val_fraction": 0.0, "captions_per_video": 1, "seed": 0,
                          "width": 16, "height": 16, "fps": 5, "min_seconds": 1.0, "max_seconds": 1.0},
            "msrvtt": files},
        **prepare_keys}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_cli(tmp_path: Path, params: Path):
    out = tmp_path / "data" / "prepared"
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(out)])
    return result, out


def assert_one_clean_line(result, out: Path, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not a crash
    lines = [line for line in result.stderr.splitlines() if line.startswith("prepare: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written
    leftovers = list(out.parent.glob(".prepared*")) if out.parent.exists() else []
    assert leftovers == []
    return lines[0]


def test_every_unusable_video_is_reported_in_one_run(tmp_path, msrvtt):
    videos = Path(msrvtt["video_dir"])
    (videos / "all/video1.mp4").unlink()  # missing
    (videos / "video2.mp4").write_bytes(b"")  # empty
    (videos / "video9.mp4").write_bytes(b"not a video at all")  # unreadable
    result, out = run_cli(tmp_path, params_file(tmp_path, msrvtt))
    line = assert_one_clean_line(
        result, out, "prepare: msrvtt: 3 of 4 videos are unusable (1 empty, 1 missing, 1 unreadable): ",
        "video1 (train): no file named 'video1'",
        f"video2 (train): {videos / 'video2.mp4'}: video file is empty",
        f"video9 (test): {videos / 'video9.mp4'}: unreadable video",
        "set prepare.on_missing: skip")
    assert line.index("video1") < line.index("video2") < line.index("video9")  # table order


def test_many_unusable_videos_are_counted_and_the_first_ten_named():
    entries = [VideoEntry(f"v{i:02d}", "train", "", problem=f"no file named 'v{i:02d}'") for i in range(13)]
    with pytest.raises(PrepareError) as err:
        assemble(Annotations("didemo", entries, {e.video_id: ["x"] for e in entries}), "raise")
    message = str(err.value)
    assert message.startswith("didemo: 13 of 13 videos are unusable (13 missing): v00 (train)")
    assert "v09 (train)" in message and "v10 (train)" not in message and "... and 3 more" in message


def damage_json(key: str, text: str):
    return lambda section: Path(section[key]).write_text(text)


@pytest.mark.parametrize("damage, fragments", [
    (damage_json("data_json", '{"sentences": [}'), ["MSRVTT_data.json: malformed JSON (", "line 1"]),
    (damage_json("data_json", '{"sentences": [{"caption": "x"}]}'),
     ["MSRVTT_data.json: sentences[0] lacks 'video_id' or 'caption'"]),
    (lambda s: Path(s["test_csv"]).unlink(), ["prepare.datasets.msrvtt.test_csv: file not found: ",
                                               "MSRVTT_JSFUSION_test.csv"]),
    (lambda s: s.update(video_dir=s["video_dir"] + "_typo"), ["prepare.source.videos: video directory not found"]),
    (damage_json("train_list", "video0\nvideo9\n"), ["msrvtt: video 'video9' is in both the train and test splits"]),
    (lambda s: Path(s["train_list"]).write_bytes(b"video0\n\xff\xfe\n"),
     ["train_list_jsfusion.txt: not UTF-8 text (byte 0xff at offset 7)"]),
    (lambda s: Path(s["test_csv"]).write_bytes(b"video_id,sentence\nvideo9,\x80bad\n"),
     ["MSRVTT_JSFUSION_test.csv: not UTF-8 text"]),
], ids=["malformed-json", "missing-key", "missing-file", "wrong-dir", "split-overlap",
        "not-utf8-list", "not-utf8-csv"])
def test_annotation_errors_are_one_line(tmp_path, msrvtt, damage, fragments):
    damage(msrvtt)
    result, out = run_cli(tmp_path, params_file(tmp_path, msrvtt))
    assert_one_clean_line(result, out, *fragments)


def test_params_errors_are_one_line(tmp_path, msrvtt):
    result, out = run_cli(tmp_path, params_file(tmp_path, msrvtt, on_missing="ignore"))
    assert_one_clean_line(result, out, "params.yaml: prepare.on_missing: 'ignore' is not one of")
    result, out = run_cli(tmp_path, tmp_path / "nope.yaml")
    assert_one_clean_line(result, out, "nope.yaml: params file not found")


def test_a_failed_rerun_keeps_the_previous_output_whole(tmp_path, msrvtt):
    params = params_file(tmp_path, msrvtt)
    result, out = run_cli(tmp_path, params)
    assert result.exit_code == 0, result.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    Path(msrvtt["data_json"]).write_text("{")
    result, _ = run_cli(tmp_path, params)
    assert result.exit_code == 1 and "malformed JSON" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(out.parent.glob(".prepared*"))


def test_the_real_command_prints_no_traceback(tmp_path, msrvtt):
    (Path(msrvtt["video_dir"]) / "video2.mp4").write_bytes(b"")
    params = params_file(tmp_path, msrvtt)
    proc = subprocess.run([sys.executable, "-m", "stages.prepare", "--params", str(params), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("prepare: ")]
    assert len(errors) == 1 and "video2.mp4: video file is empty" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
