"""``macvr index`` + ``macvr search --index``: galleries from a features split and from a folder
of video files; exact below the shortlist threshold, two-stage above, same answers either way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from pipeline.index.command import index
from pipeline.index.gallery import GalleryError, list_videos, read_gallery
from pipeline.search import search
from pipeline.videoio import write_video
from tests.test_evaluate_common import FRAMES, INFER_TAGS, SIZE, SPLITS
from tests.test_search import QUERY, TARGET, _params, project  # noqa: F401  (module fixture)

REPO_PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def _invoke(command, args):
    app = typer.Typer(add_completion=False)
    app.command()(command)  # as stages/cli.py registers it
    return CliRunner().invoke(app, [str(a) for a in args])


def _index(project, params, out, variant="macvr", *extra):
    p = project
    return _invoke(index, [out, "--features", p["features_match"], "--split", "test", "--model",
                           p["root"] / "cos" / variant / "model.pt", "--backbone", p["backbone"], "--tags", p["tags"],
                           "--params", params, "--device", "cpu", *extra])


def _search(params, gallery, *extra):
    result = _invoke(search, [QUERY, "--params", params, "--index", gallery, "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _search_split(project, params, variant):
    p = project
    result = _invoke(search, [QUERY, "--params", params, "--model", p["root"] / "cos" / variant / "model.pt",
                              "--backbone", p["backbone"], "--features", p["features_match"], "--tags", p["tags"],
                              "--videos", p["videos"], "-k", "6", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("variant", ["macvr", "dicosa"])
def test_features_gallery_exact_and_two_stage_agree_with_split_search(project, tmp_path, variant):
    exact_params, _ = _params(tmp_path / "a")
    two_params, _ = _params(tmp_path / "b", shortlist={"threshold": 0, "candidates": 3})
    built = _index(project, exact_params, tmp_path / "gallery", variant)
    assert built.exit_code == 0, built.output
    meta = read_gallery(tmp_path / "gallery")
    test_ids = sorted(v for v, s in SPLITS.items() if s == "test")
    assert meta["videos"] == len(test_ids) and sorted(meta["ids"]) == test_ids and meta["variant"] == variant
    assert (tmp_path / "gallery" / "backbone.pt").is_file()  # cached-mode: queries need the frozen encoder

    reference = _search_split(project, exact_params, variant)
    exact = _search(exact_params, tmp_path / "gallery", "-k", "6")
    assert exact["search"] == "exact" and exact["gallery"] == len(test_ids)
    assert [h["video_id"] for h in exact["results"]] == [h["video_id"] for h in reference["results"]]
    np.testing.assert_allclose([h["score"] for h in exact["results"]], [h["score"] for h in reference["results"]],
                               atol=1e-5)
    assert exact["results"][0]["video_id"] == TARGET
    assert exact["results"][0]["visual_tags"] == reference["results"][0]["visual_tags"]

    two = _search(two_params, tmp_path / "gallery", "-k", "2")
    assert two["search"] == "two-stage"
    # The target's frames point along the query: the mean-vector shortlist must keep it, and the
    # kept hits carry the exact scores.
    assert [h["video_id"] for h in two["results"]] == [h["video_id"] for h in exact["results"][:2]]
    np.testing.assert_allclose([h["score"] for h in two["results"]], [h["score"] for h in exact["results"][:2]],
                               atol=1e-5)


def test_index_errors_are_one_line(project, tmp_path):
    params, _ = _params(tmp_path)
    p = project
    nothing = _invoke(index, [tmp_path / "g", "--model", p["root"] / "cos" / "macvr" / "model.pt", "--params", params])
    assert nothing.exit_code == 1 and "exactly one of" in nothing.output
    no_split = _index(project, params, tmp_path / "g", "macvr", "--split", "nosuch")
    assert no_split.exit_code == 1 and "no 'nosuch' videos" in no_split.output
    assert not (tmp_path / "g").exists()  # nothing half-built is left behind
    not_gallery = _invoke(search, [QUERY, "--params", params, "--index", tmp_path])
    assert not_gallery.exit_code == 1 and "not a gallery" in not_gallery.output
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GalleryError, match="no video files"):
        list_videos(empty)


def _clip(colour: tuple[int, int, int], direction: int) -> np.ndarray:
    """20 frames, 96x96: a saturated square sliding across a dark background."""
    frames = np.full((20, 96, 96, 3), 20, np.uint8)
    for t in range(20):
        x = 10 + direction * 3 * t if direction > 0 else 70 - 3 * t
        frames[t, 36:60, x:x + 20] = colour
    return frames


def test_folder_gallery_runs_frames_tags_and_backbone(project, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    write_video(folder / "red.mp4", _clip((230, 30, 30), 1))
    write_video(folder / "sub" / "blue.mp4", _clip((30, 30, 230), -1))
    write_video(folder / "green.mp4", _clip((30, 220, 30), 1))
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "notes.txt").write_text("ignored")
    frames = {**REPO_PARAMS["frames"], "num_frames": FRAMES, "image_size": SIZE, "vlm_num_frames": 4,
              "workers": 1, "on_error": "skip"}
    features = {**REPO_PARAMS["features"], "infer_tags": INFER_TAGS}
    params, _ = _params(tmp_path, extra={"frames": frames, "features": features})
    torch.set_num_threads(1)
    p = project
    built = _invoke(index, [tmp_path / "gallery", "--videos", folder, "--model", p["root"] / "cos" / "macvr" / "model.pt",
                            "--backbone", p["backbone"], "--params", params, "--device", "cpu"])
    assert built.exit_code == 0, built.output
    meta = read_gallery(tmp_path / "gallery")
    assert meta["ids"] == ["green", "red", "sub/blue"]  # sorted relative paths; the broken file is skipped
    assert meta["paths"][1] == str((folder / "red.mp4").resolve())
    assert meta["source"] == {"videos": str(folder.resolve())}

    out = _search(params, tmp_path / "gallery", "-k", "5")
    assert out["search"] == "exact" and out["gallery"] == 3
    assert sorted(h["video_id"] for h in out["results"]) == meta["ids"]
    by_id = {h["video_id"]: h for h in out["results"]}
    assert by_id["red"]["path"].endswith("red.mp4")
    # The offline visual tagger saw each clip's colour: the hits show the cleaned visual tags.
    assert any("red" in t for t in by_id["red"]["visual_tags"]), by_id["red"]
    assert any("blue" in t for t in by_id["sub/blue"]["visual_tags"]), by_id["sub/blue"]
