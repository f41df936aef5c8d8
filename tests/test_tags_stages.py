"""tag_text / tag_video / clean_tags end to end on tiny generated inputs (offline and fake server)."""

from __future__ import annotations

import base64
import json
import sqlite3

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import ConfigError, from_mapping
from pipeline.tags.build import build_tags
from pipeline.tags.clean import CleanConfig, TagCleaner
from pipeline.tags.inputs import iter_video_frames
from pipeline.tags.lexicon import load_stopwords
from pipeline.tags.parse import parse_response
from pipeline.tags.pos import load_pos_tagger
from pipeline.tags.raw import FAILURES, RAW_SCHEMA, RawRow, read_raw, write_raw
from pipeline.tags.seeds import derive_seed
from pipeline.tags.tag_video import TagVideoConfig, tag_video
from stages import clean_tags, tag_text
from stages import tag_video as tag_video_stage
from tests.tags_fake_server import (FakeOpenAIServer, default_params, draw_frames, write_captions_parquet,
                                    write_frames_parquet, write_videos_parquet)

TEMPS = {"t07": 0.7, "t08": 0.8, "t09": 0.9, "t10": 1.0}
RED, BLUE, GREEN = (220, 30, 30), (40, 80, 230), (40, 200, 60)
VIDEOS = {
    "v0": ((30, 30, 30), [dict(shape="square", colour=RED, x0=70, y0=48, x1=25, y1=48, r0=8, r1=14)]),
    "v1": ((240, 240, 240), [dict(shape="circle", colour=BLUE, x0=48, y0=20, x1=48, y1=75, r0=10, r1=10)]),
    "v2": ((128, 128, 128), [dict(shape="triangle", colour=GREEN, x0=20, y0=60, x1=75, y1=60, r0=12, r1=12)]),
}
SPLITS = {"v0": "train", "v1": "train", "v2": "test", "v3": "test"}  # v3: skipped by frames
CAPTIONS = {
    "v0#0": ("v0", "train", "A red square slides to the left."),
    "v0#1": ("v0", "train", "The square gets bigger."),
    "v1#0": ("v1", "train", "A blue ball falls down on a white background."),
    "v2#0": ("v2", "test", "A green triangle moves right."),
    "v3#0": ("v3", "test", "Something happens quickly."),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tags")
    write_videos_parquet(root / "videos.parquet", SPLITS)
    write_captions_parquet(root / "captions.parquet", CAPTIONS)
    write_frames_parquet(root / "vlm_frames.parquet", {v: draw_frames(*spec) for v, spec in VIDEOS.items()})
    (root / "params.yaml").write_text(yaml.safe_dump(default_params()))
    return root


def invoke(app, args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def tagged(data):
    """Run every offline tag stage instance plus clean_tags once, as dvc repro would."""
    for key, t in TEMPS.items():
        invoke(tag_text.app, ["--params", data / "params.yaml", "--captions", data / "captions.parquet",
                              "--temperature", t, "--cache", data / "cache.sqlite",
                              "--out", data / f"raw/text_{key}.parquet"])
        invoke(tag_video_stage.app, ["--params", data / "params.yaml", "--frames",
                                     data / "vlm_frames.parquet", "--temperature", t, "--cache",
                                     data / "cache.sqlite", "--out", data / f"raw/video_{key}.parquet"])
    args = ["--params", data / "params.yaml", "--captions", data / "captions.parquet", "--videos",
            data / "videos.parquet", "--out", data / "tags.parquet", "--metrics", data / "tags.json"]
    for key in ("t10", "t08", "t07", "t09"):  # order on the command line must not matter
        args += ["--text-raw", data / f"raw/text_{key}.parquet", "--video-raw", data / f"raw/video_{key}.parquet"]
    invoke(clean_tags.app, args)
    return data


def test_raw_files_follow_the_contract(tagged):
    for modality, ids in (("text", list(CAPTIONS)), ("video", list(VIDEOS))):
        answers = {}
        for key, t in TEMPS.items():
            path = tagged / f"raw/{modality}_{key}.parquet"
            assert pq.read_schema(path).remove_metadata() == RAW_SCHEMA
            df = read_raw(path)
            assert list(df["item_id"]) == ids
            assert (df["temperature"] == t).all() and (df["finish_reason"] == "stop").all()
            assert list(df["seed"]) == [derive_seed(1234, i, t) for i in ids]
            assert df["model"].iloc[0] == f"macvr-offline-{'text' if modality == 'text' else 'visual'}"
            assert df["revision"].iloc[0].startswith("lexicon-") and len(df["prompt_hash"].iloc[0]) == 64
            assert (df["verdict"] == "ok").all() and (df["attempt"] == 0).all() and (df["detail"] == "").all()
            assert [list(c) for c in df["candidates"]] == [parse_response(r).items for r in df["response"]]
            answers[key] = list(df["response"])
        for i in range(len(ids)):  # the four temperatures give four different answers per item
            assert len({answers[k][i] for k in TEMPS}) == 4
    # the offline backends ask no server: the cache holds only the pixel analyses (one per video)
    with sqlite3.connect(tagged / "cache.sqlite") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"visual_analysis"}
        assert db.execute("SELECT COUNT(*) FROM visual_analysis").fetchone()[0] == len(VIDEOS)


def test_tags_merge_cleaned_answers_in_temperature_order(tagged):
    tags = pd.read_parquet(tagged / "tags.parquet")
    assert list(tags.columns) == ["item_id", "modality", "split", "tags"]
    assert list(tags["item_id"]) == ["v0", "v1", "v2", *CAPTIONS]  # v3 has no frames
    assert list(tags["modality"]) == ["visual"] * 3 + ["textual"] * 5
    assert list(tags["split"]) == ["train", "train", "test"] + [c[1] for c in CAPTIONS.values()]
    cfg = from_mapping(CleanConfig, default_params()["clean_tags"], "t")
    cleaner = TagCleaner(cfg, load_stopwords(), load_pos_tagger(cfg.pos_model))
    for row in tags.itertuples():
        modality = "video" if row.modality == "visual" else "text"
        expected: list[str] = []
        for key in ("t07", "t08", "t09", "t10"):
            df = read_raw(tagged / f"raw/{modality}_{key}.parquet").set_index("item_id")
            for tag in cleaner.clean(parse_response(df.loc[row.item_id, "response"]).items):
                if tag not in expected:
                    expected.append(tag)
        assert list(row.tags) == expected and len(expected) >= 10
    v0 = list(tags.loc[tags["item_id"] == "v0", "tags"].iloc[0])
    assert {"red square", "leftward motion", "growth"} <= set(v0) or {"red", "square"} <= set(v0)


def test_metrics_match_a_direct_count(tagged):
    metrics = json.loads((tagged / "tags.json").read_text())
    tags = pd.read_parquet(tagged / "tags.parquet")
    for modality in ("visual", "textual"):
        for split in ("train", "test", "all"):
            rows = tags[(tags["modality"] == modality) & ((tags["split"] == split) | (split == "all"))]
            unique, total = set(), 0
            for t in rows["tags"]:
                unique.update(t)
                total += len(t)
            got = metrics[modality][split]
            assert got["items"] == len(rows) and got["unique_tags"] == len(unique)
            assert got["avg_tags"] == pytest.approx(total / len(rows), abs=1e-4)
        assert "val" not in metrics[modality]
    assert metrics["responses"]["visual"] == {
        "responses": 12, "tagged": 12, "too_long": 0, "failed": 0, "no_tags_after_cleaning": 0,
        "items_missing_temperatures": 0, "items_failed": 0, "items_without_responses": 1}
    assert metrics["responses"]["textual"]["responses"] == 20
    assert metrics["failed"]["visual"] == {**dict.fromkeys(FAILURES, 0), "total": 0}
    assert set(metrics["dropped"]["textual"]) == {"empty", "too_long", "noun_verb", "duplicate"}


def raw_row(item: str, t: float, verdict: str, candidates: list[str] | None) -> RawRow:
    detail = "" if candidates is not None else f"failed: {verdict}"
    return RawRow(item, t, 0, 0, "m", "r", "h", None if candidates is None else "- x", "stop", verdict,
                  detail, candidates)


def test_clean_uses_kept_answers_only_and_counts_failures(data, tmp_path):
    cfg = from_mapping(CleanConfig, default_params()["clean_tags"], "t")
    write_raw([raw_row("v0#0", 0.7, "empty", None), raw_row("v0#1", 0.7, "refusal", None),
               raw_row("v1#0", 0.7, "ok", ["the man is riding a horse"])], tmp_path / "a.parquet")
    write_raw([raw_row("v0#0", 0.8, "too_long", ["motion", "growth"]),
               raw_row("v0#1", 0.8, "http_4xx", None)], tmp_path / "b.parquet")
    build_tags(cfg, [tmp_path / "b.parquet", tmp_path / "a.parquet"], [], data / "captions.parquet",
               data / "videos.parquet", tmp_path / "tags.parquet", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["responses"]["textual"] == {
        "responses": 5, "tagged": 2, "too_long": 1, "failed": 3, "no_tags_after_cleaning": 1,
        "items_missing_temperatures": 3, "items_failed": 1, "items_without_responses": 2}
    assert m["failed"]["textual"] == {**dict.fromkeys(FAILURES, 0), "empty": 1, "refusal": 1,
                                      "http_4xx": 1, "total": 3}
    tags = pd.read_parquet(tmp_path / "tags.parquet").set_index("item_id")["tags"]
    assert list(tags["v0#0"]) == ["motion", "growth"]  # its t07 answer failed: t08's alone
    assert list(tags["v1#0"]) == []  # a kept answer that cleaning emptied: an empty list
    assert "v0#1" not in tags.index  # failed at every temperature: no row, no invented tags
    assert m["textual"]["train"]["items_without_tags"] == 1
    write_raw([raw_row("nope", 0.7, "ok", ["x"])], tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="unknown item 'nope'"):
        build_tags(cfg, [tmp_path / "c.parquet"], [], data / "captions.parquet", data / "videos.parquet",
                   tmp_path / "t.parquet", tmp_path / "m.json")
    with pytest.raises(ValueError, match="share a temperature"):
        build_tags(cfg, [tmp_path / "a.parquet", tmp_path / "a.parquet"], [], data / "captions.parquet",
                   data / "videos.parquet", tmp_path / "t.parquet", tmp_path / "m.json")


def test_raw_rows_refuse_inconsistent_verdicts(tmp_path):
    with pytest.raises(ValueError, match="unknown verdict 'great'"):
        raw_row("a", 0.7, "great", ["x"])
    with pytest.raises(ValueError, match="candidates must be given exactly when"):
        raw_row("a", 0.7, "ok", None)
    with pytest.raises(ValueError, match="candidates must be given exactly when"):
        RawRow("a", 0.7, 0, 0, "m", "r", "h", "", "stop", "empty", "", [])
    pd.DataFrame({"item_id": ["a"], "response": ["- x"]}).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(ValueError, match="rerun the tag stages"):
        read_raw(tmp_path / "old.parquet")


def test_tag_video_sends_frames_in_order_to_the_server(data, tmp_path):
    frames = draw_frames(*VIDEOS["v0"])
    rows = [{"video_id": "v0", "frame_index": i, "timestamp": i / 4, "jpeg": frames[i]}
            for i in (3, 0, 7, 1, 2, 6, 5, 4)]  # shuffled rows: the reader sorts by frame_index
    pd.DataFrame(rows).to_parquet(tmp_path / "vlm.parquet", index=False)
    with FakeOpenAIServer(model="vlm") as server:
        raw = default_params(server.base_url, "vlm")["tag_video"]
        cfg = from_mapping(TagVideoConfig, {**raw, "backend": "openai"}, "t")
        rows = tag_video(cfg, tmp_path / "vlm.parquet", 0.9, tmp_path / "c.sqlite", tmp_path / "out.parquet")
    (post,) = server.posts()
    url = post.body["messages"][0]["content"][0]["video_url"]["url"]
    assert [base64.b64decode(p) for p in url.split(",", 1)[1].split(",")] == frames
    assert rows[0].seed == derive_seed(1234, "v0", 0.9) == post.body["seed"]
    assert rows[0].model == "vlm" and rows[0].revision == "main"
    odd = tmp_path / "odd.parquet"
    pd.DataFrame([{"video_id": "v0", "frame_index": i, "timestamp": 0.0, "jpeg": frames[i]}
                  for i in range(7)]).to_parquet(odd, index=False)
    with pytest.raises(ValueError, match="7 frames; the model needs an even count"):
        tag_video(cfg, odd, 0.9, tmp_path / "c.sqlite", tmp_path / "o2.parquet")


def test_offline_video_tagger_gives_the_same_file_on_any_number_of_processes(data, tmp_path):
    raw = default_params()["tag_video"]
    outs = []
    for workers in (1, 2, 3):
        cfg = from_mapping(TagVideoConfig, raw | {"workers": workers}, "tag_video")
        out = tmp_path / f"w{workers}.parquet"
        rows = tag_video(cfg, data / "vlm_frames.parquet", 0.8, tmp_path / "c.sqlite", out)
        assert [r.item_id for r in rows] == list(VIDEOS)  # input order, whatever finished first
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    with pytest.raises(ConfigError, match="workers must be in"):
        from_mapping(TagVideoConfig, raw | {"workers": 0}, "tag_video")


def test_pixel_analysis_is_cached_across_temperatures_and_keyed_by_frames_and_knobs(data, tmp_path, monkeypatch):
    import pipeline.tags.tag_video as tv

    calls = []
    real = tv.analyse_video
    monkeypatch.setattr(tv, "analyse_video", lambda *a: calls.append(1) or real(*a))
    raw = default_params()["tag_video"]
    cfg = from_mapping(TagVideoConfig, raw, "tag_video")
    cache = tmp_path / "cache.sqlite"
    frames = data / "vlm_frames.parquet"
    first = tag_video(cfg, frames, 0.7, cache, tmp_path / "a.parquet")
    assert len(calls) == len(VIDEOS)
    again = tag_video(cfg, frames, 0.9, cache, tmp_path / "b.parquet")
    assert len(calls) == len(VIDEOS)  # the other temperature only samples
    # a cached analysis gives exactly the answer of a fresh one
    fresh = tag_video(cfg, frames, 0.9, tmp_path / "other.sqlite", tmp_path / "c.parquet")
    assert [r.response for r in again] == [r.response for r in fresh]
    assert (tmp_path / "b.parquet").read_bytes() == (tmp_path / "c.parquet").read_bytes()
    assert [r.response for r in first] != [r.response for r in again]
    # another tagger knob misses the cache
    knob = from_mapping(TagVideoConfig, raw | {"offline": raw["offline"] | {"size_ratio": 1.4}}, "tag_video")
    tag_video(knob, frames, 0.7, cache, tmp_path / "d.parquet")
    assert len(calls) == 2 * len(VIDEOS) + len(VIDEOS)


def test_frames_reader_refuses_broken_files(tmp_path):
    f = draw_frames(*VIDEOS["v1"], n=2)
    bad = [{"video_id": v, "frame_index": i, "timestamp": 0.0, "jpeg": f[0]} for v, i in
           [("a", 0), ("b", 0), ("a", 1)]]
    pd.DataFrame(bad).to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(ValueError, match="video 'a' are not contiguous"):
        list(iter_video_frames(tmp_path / "x.parquet"))
    gap = [{"video_id": "a", "frame_index": i, "timestamp": 0.0, "jpeg": f[0]} for i in (0, 2)]
    pd.DataFrame(gap).to_parquet(tmp_path / "y.parquet", index=False)
    with pytest.raises(ValueError, match=r"frame_index \[0, 2\]"):
        list(iter_video_frames(tmp_path / "y.parquet"))
    with pytest.raises(FileNotFoundError, match="did the frames stage run"):
        list(iter_video_frames(tmp_path / "missing.parquet"))


def test_config_errors_name_the_key(data, tmp_path):
    params = default_params()
    del params["tag_text"]["openai"]["top_p"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(tag_text.app, ["--params", str(tmp_path / "p.yaml"), "--captions",
                                               str(data / "captions.parquet"), "--temperature", "0.7",
                                               "--cache", "c", "--out", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1 and "tag_text.openai: missing key 'top_p'" in result.output
    params = default_params()["tag_video"]
    bad = params | {"openai": params["openai"] | {"launch": True}}
    with pytest.raises(ConfigError, match="launch: true needs exactly one base_url and a launch_command"):
        from_mapping(TagVideoConfig, bad, "t")


def test_clean_tags_stage_reports_bad_inputs_in_one_line(data, tmp_path):
    pd.DataFrame({"item_id": ["v0#0"], "response": ["- x"]}).to_parquet(tmp_path / "old.parquet")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params()))
    base = ["--params", tmp_path / "params.yaml", "--captions", data / "captions.parquet", "--videos",
            data / "videos.parquet", "--out", tmp_path / "tags.parquet", "--metrics", tmp_path / "m.json"]
    for raw, message in ((tmp_path / "old.parquet", "old.parquet: not a raw tag-response file of this version"),
                         (tmp_path / "missing.parquet", "missing.parquet: not found")):
        result = CliRunner().invoke(clean_tags.app, [str(a) for a in base + ["--text-raw", raw]])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert message in result.stderr and not (tmp_path / "tags.parquet").exists()
