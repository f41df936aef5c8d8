"""PrepareConfig loading, the stage CLI, and the output-folder rules of ``prepare``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.config import ConfigError, leaf_keys, load_section
from pipeline.data.activitynet import ActivityNetConfig
from pipeline.data.didemo import DidemoConfig
from pipeline.data.msrvtt import MsrvttConfig
from pipeline.data.prepare import PrepareConfig, PrepareError, prepare
from pipeline.data.schema import read_captions, read_videos

PARAMS = """\
prepare:
  dataset: synthetic
  on_missing: raise
  synthetic:
    num_videos: 3
    test_fraction: 0.34
    captions_per_video: 2
    seed: 0
    width: 16
    height: 16
    fps: 4
    min_seconds: 1.0
    max_seconds: 1.5
  msrvtt:
    data_json: ""
    train_list: ""
    test_csv: ""
    video_dir: ""
  didemo:
    train_json: ""
    val_json: ""
    test_json: ""
    video_dir: ""
  activitynet:
    train_json: ""
    test_json: ""
    video_dir: ""
"""


def empty_real_sections() -> dict:
    """The real-dataset sections, all paths empty (what a synthetic run's params hold)."""
    return dict(msrvtt=MsrvttConfig("", "", "", ""), didemo=DidemoConfig("", "", "", ""),
                activitynet=ActivityNetConfig("", "", ""))


def write_params(tmp_path, text: str = PARAMS):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_params_load_into_config(tmp_path):
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path))
    assert config.dataset == "synthetic" and config.synthetic.num_videos == 3
    assert config.synthetic.min_seconds == 1.0 and config.didemo.val_json == ""


def test_leaf_keys_cover_every_section():
    keys = leaf_keys(PrepareConfig)
    assert {"dataset", "on_missing", "synthetic.seed", "synthetic.num_videos", "msrvtt.train_list",
            "didemo.val_json", "activitynet.video_dir"} <= set(keys)
    assert len(keys) == 2 + 9 + 4 + 4 + 3


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("    seed: 0\n", ""), "prepare.synthetic: missing key 'seed'"),
    (lambda t: t.replace("  didemo:\n", "  didemo:\n    extra: 1\n"), "unknown key 'extra'"),
    (lambda t: t.replace("dataset: synthetic", "dataset: kinetics"), "'kinetics' is not one of"),
    (lambda t: t.replace("on_missing: raise", "on_missing: ignore"), "'ignore' is not one of"),
    (lambda t: t.replace("dataset: synthetic", "dataset: msrvtt"),
     "dataset is 'msrvtt' but prepare.msrvtt.data_json is empty"),
    (lambda t: t.replace("dataset: synthetic", "dataset: activitynet"),
     "prepare.activitynet.train_json is empty"),
    (lambda t: t.replace("width: 16", "width: 15"), "width must be even"),
    (lambda t: t.replace("fps: 4", "fps: 4.5"), "expected an integer"),
])
def test_params_errors(tmp_path, edit, message):
    with pytest.raises(ConfigError) as err:
        load_section(PrepareConfig, "prepare", write_params(tmp_path, edit(PARAMS)))
    assert message in str(err.value)


def test_didemo_val_may_stay_empty(tmp_path):
    section = '  didemo:\n    train_json: ""\n    val_json: ""\n    test_json: ""\n    video_dir: ""\n'
    assert section in PARAMS
    text = PARAMS.replace("dataset: synthetic", "dataset: didemo").replace(
        section, '  didemo:\n    train_json: t.json\n    val_json: ""\n    test_json: s.json\n'
                 '    video_dir: v\n')
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path, text))
    assert config.dataset == "didemo" and config.didemo.val_json == ""


def test_stage_cli_writes_tables(tmp_path, monkeypatch):
    from stages.prepare import app

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    result = CliRunner().invoke(app, ["--params", "params.yaml", "--out", "data/prepared"])
    assert result.exit_code == 0, result.output
    assert "train: 2 videos, 4 captions" in result.output
    videos = read_videos(tmp_path / "data/prepared/videos.parquet")
    read_captions(tmp_path / "data/prepared/captions.parquet", videos)
    # Relative output -> relative paths: the folder can move with the repository.
    assert videos["path"].str.startswith("data/prepared/videos/").all()
    assert (tmp_path / "data/prepared/synthetic_truth.json").is_file()


def test_rerun_replaces_output_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path))
    prepare(config, "out")
    (tmp_path / "out/videos/stale.mp4").write_bytes(b"old")
    prepare(config, "out")
    assert not (tmp_path / "out/videos/stale.mp4").exists()
    assert len(list((tmp_path / "out/videos").glob("*.mp4"))) == 3


def test_refuses_foreign_or_enclosing_folder(tmp_path, monkeypatch):
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/keep.txt").write_text("precious")
    with pytest.raises(PrepareError, match="refusing to replace"):
        prepare(config, tmp_path / "notes")
    assert (tmp_path / "notes/keep.txt").read_text() == "precious"
    monkeypatch.chdir(tmp_path / "notes")
    with pytest.raises(PrepareError, match="contains the working directory"):
        prepare(config, tmp_path)
