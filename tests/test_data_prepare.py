"""PrepareConfig loading, the stage CLI, and the output-folder rules of ``prepare``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.config import ConfigError, leaf_keys, load_section
from pipeline.data.datasets import DidemoFiles, SourceConfig
from pipeline.data.prepare import PrepareConfig, PrepareError, prepare
from pipeline.data.schema import read_captions, read_videos
from pipeline.data.synthetic import SyntheticConfig

PARAMS = """\
prepare:
  dataset: synthetic
  on_missing: raise
  source:
    annotations: pipeline/data
    videos: pipeline/data
  datasets:
    synthetic:
      num_videos: 3
      test_fraction: 0.34
      val_fraction: 0.0
      captions_per_video: 2
      seed: 0
      width: 16
      height: 16
      fps: 4
      min_seconds: 1.0
      max_seconds: 1.5
    msrvtt: {data_json: "", train_list: "", test_csv: ""}
    didemo:
      train_json: ""
      val_json: ""
      test_json: ""
"""


def write_params(tmp_path, text: str = PARAMS):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_params_load_into_config(tmp_path):
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path))
    assert config.dataset == "synthetic" and config.source == SourceConfig("pipeline/data", "pipeline/data")
    assert isinstance(config.params, SyntheticConfig) and config.params.num_videos == 3
    assert config.params.min_seconds == 1.0 and config.adapter.name == "synthetic"
    assert list(config.datasets) == ["synthetic", "msrvtt", "didemo"]  # params.yaml order
    assert config.datasets["didemo"] == DidemoFiles("", "", "")
    # only the chosen dataset needs an entry
    text = PARAMS[: PARAMS.index("    msrvtt:")]
    assert list(load_section(PrepareConfig, "prepare", write_params(tmp_path, text)).datasets) == ["synthetic"]


def test_leaf_keys_are_the_sections_knobs():
    """dvc.yaml depends on the whole prepare section; its typed keys are these."""
    assert leaf_keys(PrepareConfig) == ["dataset", "on_missing", "source.annotations", "source.videos", "datasets"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("      seed: 0\n", ""), "prepare.datasets.synthetic: missing key 'seed'"),
    (lambda t: t.replace("    didemo:\n", "    didemo:\n      extra: 1\n"), "unknown key 'extra'"),
    (lambda t: t.replace("dataset: synthetic", "dataset: kinetics"),
     "unknown dataset 'kinetics'; registered: synthetic, msrvtt, didemo, activitynet"),
    (lambda t: t.replace("    didemo:\n", "    kinetics: {}\n    didemo:\n"),
     "prepare.datasets: unknown dataset 'kinetics'; registered: synthetic, msrvtt, didemo, activitynet"),
    (lambda t: t.replace("on_missing: raise", "on_missing: ignore"), "'ignore' is not one of"),
    (lambda t: t.replace("dataset: synthetic", "dataset: msrvtt"),
     "dataset is 'msrvtt' but prepare.datasets.msrvtt.data_json is empty"),
    (lambda t: t.replace("dataset: synthetic", "dataset: activitynet"),
     "dataset is 'activitynet' but prepare.datasets has no 'activitynet' entry"),
    (lambda t: t.replace("width: 16", "width: 15"), "width must be even"),
    (lambda t: t.replace("fps: 4", "fps: 4.5"), "expected an integer"),
    (lambda t: t.replace("    videos: pipeline/data\n", ""), "prepare.source: missing key 'videos'"),
    (lambda t: t.replace("    videos: pipeline/data\n", "    videos: ''\n"), "source.videos must name a folder"),
])
def test_params_errors(tmp_path, edit, message):
    with pytest.raises(ConfigError) as err:
        load_section(PrepareConfig, "prepare", write_params(tmp_path, edit(PARAMS)))
    assert message in str(err.value)


def test_didemo_val_may_stay_empty(tmp_path):
    section = '    didemo:\n      train_json: ""\n      val_json: ""\n      test_json: ""\n'
    assert section in PARAMS
    text = PARAMS.replace("dataset: synthetic", "dataset: didemo").replace(
        section, '    didemo:\n      train_json: t.json\n      val_json: ""\n      test_json: s.json\n')
    config = load_section(PrepareConfig, "prepare", write_params(tmp_path, text))
    assert config.dataset == "didemo" and config.params.val_json == ""
    assert config.source.annotation(config.params.train_json) == "pipeline/data/t.json"
    with pytest.raises(ConfigError, match="prepare.datasets.didemo.test_json is empty"):
        load_section(PrepareConfig, "prepare", write_params(tmp_path, text.replace("test_json: s.json", 'test_json: " "')))


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
