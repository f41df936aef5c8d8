"""The authors' tag files: read as the official loaders read them, matched to the prepared items,
refused (or skipped and counted) when they do not fit, and written back in the same formats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.released.config import ReleasedConfig
from pipeline.released.tags import (ReleasedTagsError, build_released_tags, export_concepts, export_csv, import_tags,
                                    parse_tag_list, tag_literal)
from pipeline.tags.table import read_tags
from tests.tags_fake_server import default_params

FIXTURE = Path(__file__).parent / "golden" / "released" / "msrvtt"


def prepared(tmp_path: Path, captions: dict[str, list[tuple[str, str]]], dataset: str = "msrvtt"
             ) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path]:
    """captions: video_id -> [(split, text), ...] (caption ids '<video>#<index>')."""
    cap_rows, vid_rows = [], []
    for vid, items in captions.items():
        vid_rows.append({"video_id": vid, "path": f"{vid}.mp4", "split": items[0][0], "duration": 2.0, "fps": 5.0,
                         "num_frames": 10, "width": 40, "height": 30, "dataset": dataset})
        for i, (split, text) in enumerate(items):
            cap_rows.append({"caption_id": f"{vid}#{i}", "video_id": vid, "split": split, "caption_index": i,
                             "text": text})
    caps, vids = pd.DataFrame(cap_rows), pd.DataFrame(vid_rows)
    cp, vp = tmp_path / "captions.parquet", tmp_path / "videos.parquet"
    caps.to_parquet(cp, index=False)
    vids.to_parquet(vp, index=False)
    return caps, vids, cp, vp


def write_csv(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["video_id", "sentence", "textual_tags", "visual_tags"]).to_csv(path, index=False)
    return path


def fixture_prepared(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepared tables for the golden MSR-VTT release's captions (train: the 9k file; test)."""
    train = pd.read_csv(FIXTURE / "anns/training_9k.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(FIXTURE / "anns/testing.csv", dtype=str, keep_default_na=False)
    captions: dict[str, list[tuple[str, str]]] = {}
    for split, df in (("train", train), ("test", test)):
        for vid, text in zip(df.iloc[:, 0], df.iloc[:, 1]):
            captions.setdefault(vid, []).append((split, text))
    caps, vids, _, _ = prepared(tmp_path, captions)
    return caps, vids


# --------------------------------------------------------------------------- parsing
def test_tag_lists_parse_like_the_official_loader():
    assert parse_tag_list("['a', \"children's games\", 'b']", "x") == ["a", "children's games", "b"]
    assert parse_tag_list("[]", "x") == []
    assert parse_tag_list(["json", "list"], "x") == ["json", "list"]   # a JSON list is accepted too
    assert parse_tag_list("  ['Case Kept', ' spaced ']  ", "x") == ["Case Kept", " spaced "]  # verbatim
    for bad, why in (("['a', 'b'", "not a tag list literal"), ("a, b", "not a tag list literal"),
                     ("{'a': 1}", "expected a list"), ("['a', 3]", "must be strings"), ("__import__('os')", "literal")):
        with pytest.raises(ReleasedTagsError, match=why):
            parse_tag_list(bad, "f.csv row 3")
    assert tag_literal(["x", "it's"]) == "['x', \"it's\"]" and parse_tag_list(tag_literal(["x", "it's"]), "") == ["x", "it's"]


# --------------------------------------------------------------------------- csv (MSR-VTT)
def test_csv_rows_match_captions_by_video_and_text_in_order(tmp_path):
    caps, vids, _, _ = prepared(tmp_path, {
        "v1": [("train", "a dog runs"), ("train", "a dog runs"), ("train", "A  cat\tsleeps ")],
        "v2": [("test", "someone cooks")]})
    f1 = write_csv(tmp_path / "anns/training_9k.csv", [
        ("v1", "a dog runs", "['first', 'second']", "['blue', 'red', 'green']"),
        ("v1", "A cat sleeps", "['c']", "['blue', 'red', 'green']"),
        ("v1", "a dog runs", "['third']", "['blue', 'red', 'green']")])
    f2 = write_csv(tmp_path / "anns/testing.csv", [("v2", "someone cooks", "['food', 'kitchen', 'chef']", "['pan']")])
    out = import_tags("csv", [f1, f2], caps, vids, skip=False)
    by = {(r["modality"], r["item_id"]): r["tags"] for r in out.rows}
    # identical captions of one video are matched in order; whitespace does not matter
    assert by[("textual", "v1#0")] == ["first", "second"] and by[("textual", "v1#1")] == ["third"]
    assert by[("textual", "v1#2")] == ["c"] and by[("textual", "v2#0")] == ["food", "kitchen", "chef"]
    assert by[("visual", "v1")] == ["blue", "red", "green"] and by[("visual", "v2")] == ["pan"]  # order kept
    assert [r["item_id"] for r in out.rows] == ["v1", "v2", "v1#0", "v1#1", "v1#2", "v2#0"]  # prepared order
    assert out.report["rows"] == 4 and out.report["skipped"] == {} and out.report["visual_disagreements"] == 0


def test_csv_problems_are_listed_together_or_skipped_and_counted(tmp_path):
    caps, vids, _, _ = prepared(tmp_path, {"v1": [("train", "one"), ("train", "two")], "v2": [("train", "three")],
                                           "v3": [("test", "four")]})
    f = write_csv(tmp_path / "t.csv", [
        ("v1", "one", "['a']", "['x']"),
        ("v1", "two", "['b'", "['x']"),                 # unparsable textual tags
        ("v9", "ghost", "['c']", "['y']"),              # a video not prepared
        ("v2", "not the caption", "['d']", "['z']")])   # a caption not prepared
    with pytest.raises(ReleasedTagsError) as err:
        import_tags("csv", [f], caps, vids, skip=False)
    msg = str(err.value)
    assert "t.csv row 2 (v1) textual tags: not a tag list literal" in msg
    assert "t.csv row 3 (v9): video not in the prepared data" in msg
    assert "t.csv row 4 (v2): no prepared caption 'not the caption' left" in msg
    assert "caption v2#0 (video v2) has no row" in msg and "caption v3#0 (video v3) has no row" in msg
    assert "2 extra" in msg and "1 unparsable" in msg and "prepare.on_missing: skip" in msg
    out = import_tags("csv", [f], caps, vids, skip=True)
    assert out.report["skipped"] == {"extra": 2, "missing": 4, "unparsable": 1}
    assert out.report["items_without_tags"] == {"visual": 2, "textual": 3}
    assert [(r["modality"], r["item_id"]) for r in out.rows] == [("visual", "v1"), ("textual", "v1#0")]


def test_csv_reads_columns_by_position_and_refuses_too_few(tmp_path):
    caps, vids, _, _ = prepared(tmp_path, {"v1": [("test", "one")]})
    f = tmp_path / "odd.csv"
    f.write_text("id,text,tt,vt,extra\nv1,one,\"['t']\",\"['v']\",ignored\n")
    out = import_tags("csv", [f], caps, vids, skip=False)
    assert {r["modality"]: r["tags"] for r in out.rows} == {"visual": ["v"], "textual": ["t"]}
    f.write_text("video_id,sentence,textual_tags\nv1,one,\"['t']\"\n")
    with pytest.raises(ReleasedTagsError, match="3 columns, expected at least 4"):
        import_tags("csv", [f], caps, vids, skip=False)
    with pytest.raises(ReleasedTagsError, match="released tag file not found"):
        import_tags("csv", [tmp_path / "nope.csv"], caps, vids, skip=False)


def test_disagreeing_visual_tags_keep_the_first_row_and_are_counted(tmp_path, caplog):
    caps, vids, _, _ = prepared(tmp_path, {"v1": [("train", "one"), ("train", "two")]})
    f = write_csv(tmp_path / "t.csv", [("v1", "two", "['a']", "['x', 'y']"), ("v1", "one", "['b']", "['y']")])
    out = import_tags("csv", [f], caps, vids, skip=False)
    assert {r["item_id"]: r["tags"] for r in out.rows if r["modality"] == "visual"} == {"v1": ["x", "y"]}
    assert out.report["visual_disagreements"] == 1
    # the first row is the second prepared caption: QB-Norm's text querybank differs from the official
    assert out.report["first_row_not_first_caption"] == 1


def test_the_golden_release_round_trips_through_export(tmp_path):
    caps, vids = fixture_prepared(tmp_path)
    files = [FIXTURE / "anns/training_9k.csv", FIXTURE / "anns/testing.csv"]
    out = import_tags("csv", files, caps, vids, skip=False)
    assert out.report["skipped"] == {} and len(out.rows) == len(vids) + len(caps)
    visual = {r["item_id"]: r["tags"] for r in out.rows if r["modality"] == "visual"}
    textual = {r["item_id"]: r["tags"] for r in out.rows if r["modality"] == "textual"}
    assert textual["video7013#0"] == []   # an empty list is an item with no tags, not a missing one
    for split, name in (("train", "training_9k.csv"), ("test", "testing.csv")):
        again = export_csv(visual, textual, caps, split)
        original = pd.read_csv(FIXTURE / "anns" / name, dtype=str, keep_default_na=False)
        assert again.values.tolist() == original.values.tolist()


# --------------------------------------------------------------------------- concepts (DiDeMo, ActivityNet)
def test_concepts_file_matches_videos_and_their_paragraph(tmp_path):
    caps, vids, _, _ = prepared(tmp_path, {"123@N00_4.mov": [("train", "p1")], "v_abc": [("test", "p2")]},
                                dataset="didemo")
    f = tmp_path / "all_concepts_llama3.json"
    f.write_text(json.dumps({"123@N00_4": ["['walking', 'park']", "['stroll']"],   # key without the extension
                             "v_abc": [["json", "list"], "['t']"]}))
    out = import_tags("concepts", [f], caps, vids, skip=False)
    by = {(r["modality"], r["item_id"]): r["tags"] for r in out.rows}
    assert by == {("visual", "123@N00_4.mov"): ["walking", "park"], ("visual", "v_abc"): ["json", "list"],
                  ("textual", "123@N00_4.mov#0"): ["stroll"], ("textual", "v_abc#0"): ["t"]}
    data = export_concepts({"123@N00_4.mov": ["walking", "park"], "v_abc": ["json", "list"]},
                           {"123@N00_4.mov#0": ["stroll"], "v_abc#0": ["t"]}, caps, vids)
    assert data == {"123@N00_4.mov": ["['walking', 'park']", "['stroll']"], "v_abc": ["['json', 'list']", "['t']"]}


def test_concepts_problems(tmp_path):
    caps, vids, _, _ = prepared(tmp_path, {"a": [("train", "p")], "b": [("test", "q")], "c": [("test", "r")]},
                                dataset="activitynet")
    f = tmp_path / "c.json"
    f.write_text('{"a": ["[1]", "[]"], "a": ["[]", "[]"], "z": ["[]", "[]"], "b": ["[]"]}')
    with pytest.raises(ReleasedTagsError) as err:
        import_tags("concepts", [f], caps, vids, skip=False)
    msg = str(err.value)
    for part in ("['a'] visual tags: tags must be strings", "a second entry for video a", "['z']: video not in",
                 "['b']: expected [visual tags, textual tags]", "video c has no entry"):
        assert part in msg, (part, msg)
    f.write_text("{not json")
    with pytest.raises(ReleasedTagsError, match="not readable JSON"):
        import_tags("concepts", [f], caps, vids, skip=False)
    caps2, vids2, _, _ = prepared(tmp_path, {"a": [("train", "p"), ("train", "q")]})
    f.write_text('{"a": ["[]", "[]"]}')
    with pytest.raises(ReleasedTagsError, match="one textual tag list per video"):
        import_tags("concepts", [f], caps2, vids2, skip=False)


# --------------------------------------------------------------------------- the stages
def released_config(tmp_path: Path, tags: str | None = "anns", fmt: str = "auto") -> ReleasedConfig:
    return ReleasedConfig(dir=str(tmp_path / "released"), tags=tags, tags_format=fmt,
                          csv_files=["training_9k.csv", "testing.csv"], concepts_file="all_concepts_llama3.json")


def test_build_writes_tags_and_tab1_statistics_or_nothing(tmp_path):
    caps, vids = fixture_prepared(tmp_path)
    cp, vp = tmp_path / "c.parquet", tmp_path / "v.parquet"
    caps.to_parquet(cp, index=False)
    vids.to_parquet(vp, index=False)
    (tmp_path / "released").mkdir()
    import shutil

    shutil.copytree(FIXTURE / "anns", tmp_path / "released/anns")
    out, metrics = tmp_path / "tags.parquet", tmp_path / "tags.json"
    build_released_tags(released_config(tmp_path), cp, vp, out, metrics, skip=False)
    table = read_tags(out)
    assert len(table.visual) == 14 and len(table.textual) == 22
    report = json.loads(metrics.read_text())
    assert report["textual"]["test"]["items"] == 6 and report["visual"]["train"]["items"] == 8
    assert report["released"]["format"] == "csv" and report["released"]["rows"] == 22
    vocab = {t for tags in table.visual.values() for t in tags}
    assert report["visual"]["all"]["unique_tags"] == len(vocab)
    # a broken file: one line naming it, nothing written
    out.unlink(), metrics.unlink()
    (tmp_path / "released/anns/testing.csv").write_text("video_id,sentence,textual_tags,visual_tags\n")
    with pytest.raises(ReleasedTagsError, match="caption video7010#0 .* has no row"):
        build_released_tags(released_config(tmp_path), cp, vp, out, metrics, skip=False)
    assert not out.exists() and not metrics.exists()
    with pytest.raises(ValueError, match="auto knows the official formats"):
        vids.assign(dataset="synthetic").to_parquet(vp, index=False)
        build_released_tags(released_config(tmp_path), cp, vp, out, metrics, skip=False)


def test_tag_stages_do_no_work_and_clean_tags_imports(tmp_path):
    from stages.clean_tags import app as clean_app
    from stages.tag_text import app as text_app

    caps, vids = fixture_prepared(tmp_path)
    cp, vp = tmp_path / "c.parquet", tmp_path / "v.parquet"
    caps.to_parquet(cp, index=False)
    vids.to_parquet(vp, index=False)
    import shutil

    shutil.copytree(FIXTURE / "anns", tmp_path / "released/anns")
    params = default_params("http://127.0.0.1:9/v1")  # nothing listens: a request would fail
    params["tag_text"]["backend"] = "openai"
    params["released"].update(dir=str(tmp_path / "released"), tags="anns")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    runner = CliRunner()
    raw = tmp_path / "raw/text_t07.parquet"
    result = runner.invoke(text_app, ["--params", str(tmp_path / "params.yaml"), "--captions", str(cp),
                                      "--temperature", "0.7", "--cache", str(tmp_path / "cache.sqlite"),
                                      "--out", str(raw)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(raw).empty and not (tmp_path / "cache.sqlite").exists()
    result = runner.invoke(clean_app, ["--params", str(tmp_path / "params.yaml"), "--text-raw", str(raw),
                                       "--captions", str(cp), "--videos", str(vp), "--out",
                                       str(tmp_path / "tags.parquet"), "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert len(read_tags(tmp_path / "tags.parquet").textual) == 22
    # on_missing: skip turns a missing row into a counted skip
    (tmp_path / "released/anns/testing.csv").write_text(
        (FIXTURE / "anns/testing.csv").read_text().splitlines(keepends=True)[0]
        + "".join((FIXTURE / "anns/testing.csv").read_text().splitlines(keepends=True)[2:]))
    result = runner.invoke(clean_app, ["--params", str(tmp_path / "params.yaml"), "--captions", str(cp),
                                       "--videos", str(vp), "--out", str(tmp_path / "tags.parquet"),
                                       "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 1 and "has no row" in result.output
    params["prepare"]["on_missing"] = "skip"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = runner.invoke(clean_app, ["--params", str(tmp_path / "params.yaml"), "--captions", str(cp),
                                       "--videos", str(vp), "--out", str(tmp_path / "tags.parquet"),
                                       "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["released"]["skipped"] == {"missing": 2}


def test_import_export_and_diff_commands(tmp_path):
    from stages.cli import app

    caps, vids = fixture_prepared(tmp_path)
    cp, vp = tmp_path / "c.parquet", tmp_path / "v.parquet"
    caps.to_parquet(cp, index=False)
    vids.to_parquet(vp, index=False)
    runner = CliRunner()
    a = tmp_path / "authors.parquet"
    result = runner.invoke(app, ["import-tags", str(FIXTURE / "anns"), "--captions", str(cp), "--videos", str(vp),
                                 "--out", str(a)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export-tags", "--tags", str(a), "--captions", str(cp), "--videos", str(vp),
                                 "--format", "csv", "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exported/testing.csv").read_text() == (FIXTURE / "anns/testing.csv").read_text()
    # a second set: the same tags, one item changed
    table = pd.read_parquet(a)
    table.at[0, "tags"] = ["totally", "different"]
    b = tmp_path / "b.parquet"
    table.to_parquet(b, index=False)
    result = runner.invoke(app, ["tags-diff", str(a), str(b), "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["visual"]["items"]["both"] == 14 and d["visual"]["identical_items"] == 13
    assert d["textual"]["identical_items"] == 22 and d["textual"]["jaccard"]["mean"] == 1.0
    assert set(d["visual"]["vocabulary"]["top_only_b"]) == {"totally", "different"}
    assert "visual: 14 items in both" in result.output
