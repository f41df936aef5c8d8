"""``macvr search``: a gallery where one video is made to match the query ranks it first; query
tags come from the configured tagger (offline, or an OpenAI-compatible server with its cache)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from pipeline.backbone.io import load_backbone, save_weights
from pipeline.config import load_section
from pipeline.features import load_features
from pipeline.features.inputs import load_tags
from pipeline.io import write_npy
from pipeline.model import MacVR
from pipeline.search import SearchConfig, ShortlistParams, query_tags, search
from tests.tags_fake_server import FakeOpenAIServer, default_params
from tests.test_evaluate_common import INFER_TAGS, MAX_WORDS, SPLITS, make_project, save_checkpoint, tiny_backbone
from tests.test_train_common import tiny_model

QUERY = "a red circle moves left"
TARGET = "v07"  # a test video; its frames are replaced by the query's CLIP embedding


SHORTLIST = {"threshold": 20000, "candidates": 200, "embedding": "mean", "backend": "faiss-hnsw"}


def _params(tmp_path, backend: str = "offline", base_url: str = "http://127.0.0.1:9/v1", shortlist: dict | None = None,
            extra: dict | None = None) -> tuple:
    tags = default_params(base_url=base_url)
    tags["tag_text"]["backend"] = backend
    tags["clean_tags"]["drop_noun_verb"] = False  # no spaCy load: the cleaner's own tests cover it
    search_section = {"temperatures": [0.8, 0.7], "cache": str(tmp_path / "cache" / "search.sqlite"),
                      "device": "cpu", "shortlist": dict(SHORTLIST, **(shortlist or {}))}
    path = tmp_path / "params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"search": search_section, "tag_text": tags["tag_text"],
                                    "tag_video": tags["tag_video"], "clean_tags": tags["clean_tags"],
                                    "text": {"max_words": MAX_WORDS}, **(extra or {})}))
    return path, load_section(SearchConfig, "search", path)


def cosine_head(variant: str) -> tuple[MacVR, object]:
    """No temporal module and a constant confidence of 1: s_ij = sum_k cos(e_t^k, e_v^k), which is
    maximal (K) exactly when the pooled video points along the caption."""
    config = dataclasses.replace(tiny_model(variant), temporal_layers=0)
    head = MacVR(config)
    with torch.no_grad():
        head.confidence.fc1.weight.zero_()
        head.confidence.fc1.bias.fill_(1.0)
        head.confidence.fc2.weight.fill_(1.0 / head.confidence.hidden)
        head.confidence.fc2.bias.zero_()
    return head, config


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = make_project(tmp_path_factory.mktemp("search"))
    features = p["root"] / "features_match"
    shutil.copytree(p["features"], features)
    store = load_features(features, mmap=False)
    with torch.no_grad():
        q = load_backbone(p["backbone"]).encode_texts([QUERY], MAX_WORDS)[0].numpy()
    frames = np.array(store.frames)
    row = int(store.videos.set_index("video_id").loc[TARGET, "row"])
    frames[row][store.frame_mask[row]] = q.astype(np.float16) * 3.0  # the scale does not change a cosine
    write_npy(frames, features / "frames.npy")
    p["features_match"] = features
    for variant in ("dicosa", "macvr"):
        head, _ = cosine_head(variant)
        save_checkpoint(p["root"] / "cos" / variant / "model.pt", variant, seed=0, head=head)
    return p


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(search)  # as ``macvr search`` registers it
    return app


def _run(project, params, *extra):
    p = project
    args = [QUERY, "--params", params, "--backbone", p["backbone"], "--features", p["features_match"],
            "--tags", p["tags"], "--videos", p["videos"], *extra]
    return CliRunner().invoke(_app(), [str(a) for a in args])


@pytest.mark.parametrize("variant", ["macvr", "dicosa"])
def test_the_matching_video_ranks_first(project, tmp_path, variant):
    params, cfg = _params(tmp_path)
    result = _run(project, params, "--model", project["root"] / "cos" / variant / "model.pt", "--top-k", "4", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    hits = out["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert hits[0]["video_id"] == TARGET
    assert hits[0]["score"] == pytest.approx(4.0, abs=2e-2)  # K concepts, each cosine 1 (fp16 features)
    assert all(h["score"] < 3.9 for h in hits[1:])
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert out["gallery"] == sum(s == "test" for s in SPLITS.values())  # every test video, captioned or not
    assert hits[0]["path"] == f"videos/{TARGET}.mp4"
    assert hits[0]["visual_tags"] == load_tags(project["tags"])["visual"][TARGET][:INFER_TAGS]
    if variant == "macvr":
        assert out["textual_tags"] == query_tags(QUERY, params, cfg) and "circle" in out["textual_tags"]
        assert out["tag_sentence"] == "a video of " + ", ".join(out["textual_tags"][:INFER_TAGS])
    else:
        assert out["textual_tags"] == [] and out["tag_sentence"] is None  # DiCoSA takes no tags


def test_table_output(project, tmp_path):
    params, _ = _params(tmp_path)
    result = _run(project, params, "--model", project["root"] / "cos" / "macvr" / "model.pt", "-k", "2")
    assert result.exit_code == 0, result.output
    assert TARGET in result.stdout and "visual tags" in result.stdout and f"videos/{TARGET}.mp4" in result.stdout
    assert "textual tags:" in result.stdout


def test_query_tags_from_an_openai_server_are_cached(project, tmp_path):
    with FakeOpenAIServer() as server:
        params, cfg = _params(tmp_path, "openai", server.base_url)
        first = query_tags(QUERY, params, cfg)
        assert len(server.posts()) == 2  # one request per temperature
        assert sorted(r.body["temperature"] for r in server.posts()) == [0.7, 0.8]
        assert query_tags(QUERY, params, cfg) == first
        assert len(server.posts()) == 2  # the second search asked nothing
    # The fake answers list "temperature 0.7" then "temperature 0.8": merged in temperature order.
    temps = [t for t in first if t.startswith("temperature")]
    assert temps == ["temperature 0 7", "temperature 0 8"]


def test_errors_are_one_line_messages(project, tmp_path):
    params, _ = _params(tmp_path)
    model = project["root"] / "cos" / "macvr" / "model.pt"
    empty = CliRunner().invoke(_app(), ["  ", "--params", str(params), "--model", str(model)])
    assert empty.exit_code == 1 and "the query is empty" in empty.output
    missing = _run(project, params, "--model", tmp_path / "nope.pt")
    assert missing.exit_code == 1 and "checkpoint not found" in missing.output
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "ft.pt", "macvr", seed=2, backbone=tiny_backbone())
    finetuned = _run(project, params, "--model", tmp_path / "ft.pt")
    assert finetuned.exit_code == 1 and "needs --frames" in finetuned.output
    no_split = _run(project, params, "--model", model, "--split", "nosuch")
    assert no_split.exit_code == 1 and "no 'nosuch' videos" in no_split.output
    torch.manual_seed(3)
    save_weights(tiny_backbone(), tmp_path / "other.pt", {"kind": "test"})
    other = CliRunner().invoke(_app(), [str(a) for a in [QUERY, "--params", params, "--model", model, "--backbone",
                                                         tmp_path / "other.pt", "--features", project["features_match"]]])
    assert other.exit_code == 1 and "is not the backbone that encoded the features" in other.output


def test_finetune_checkpoint_reencodes_the_gallery(project, tmp_path):
    params, _ = _params(tmp_path)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "ft.pt", "macvr", seed=2, backbone=tiny_backbone())
    result = _run(project, params, "--model", tmp_path / "ft.pt", "--frames", project["frames"], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["results"]) == out["gallery"] == 6
    assert {h["video_id"] for h in out["results"]} == {v for v, s in SPLITS.items() if s == "test"}


def test_search_config_validation():
    shortlist = ShortlistParams(**SHORTLIST)
    with pytest.raises(ValueError, match="at least one temperature"):
        SearchConfig(temperatures=[], cache="c", device="cpu", shortlist=shortlist)
    with pytest.raises(ValueError, match="repeats"):
        SearchConfig(temperatures=[0.7, 0.7], cache="c", device="cpu", shortlist=shortlist)
    with pytest.raises(ValueError, match="backend must be one of"):
        ShortlistParams(**{**SHORTLIST, "backend": "annoy"})
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        ShortlistParams(**{**SHORTLIST, "candidates": 0})


def test_gallery_excludes_other_splits(project, tmp_path):
    params, _ = _params(tmp_path)
    result = _run(project, params, "--model", project["root"] / "cos" / "macvr" / "model.pt", "--split", "train",
                  "-k", "50", "--json")
    out = json.loads(result.stdout)
    train = pd.Series(SPLITS)
    assert {h["video_id"] for h in out["results"]} == set(train[train == "train"].index)
