"""The embedded synthetic dataset: rendering, partial captions, determinism, output files."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from pipeline.data import synth_captions as sc
from pipeline.data.datasets import SourceConfig
from pipeline.data.prepare import PrepareConfig, prepare
from pipeline.data.schema import CAPTIONS_SCHEMA, VIDEOS_SCHEMA, read_captions, read_videos
from pipeline.data.synth_render import coverage, render_scene
from pipeline.data.synth_scene import BACKGROUNDS, COLOURS, Scene, ShapeTrack, sample_scene
from pipeline.data.synthetic import SyntheticConfig
from pipeline.io import read_json

SMALL = SyntheticConfig(num_videos=6, test_fraction=0.34, val_fraction=0.0, captions_per_video=4, seed=7, width=32,
                        height=32, fps=5, min_seconds=1.0, max_seconds=2.0)


def config(synthetic: SyntheticConfig = SMALL) -> PrepareConfig:
    return PrepareConfig(dataset="synthetic", on_missing="raise",
                         source=SourceConfig(annotations="pipeline/data", videos="pipeline/data"),
                         datasets={"synthetic": synthetic})


def md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.mp4"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "prepared"
    prepare(config(), out)
    return out


# --- rendering -------------------------------------------------------------------------------

def track(**kw) -> ShapeTrack:
    base = dict(shape="circle", colour="red", motion="static", size_change="none", event="none",
                event_time=0.0, new_colour="", start=(0.5, 0.5), end=(0.5, 0.5), size_start=0.2,
                size_end=0.2)
    return ShapeTrack(**{**base, **kw})


@pytest.mark.parametrize("shape, area", [
    ("circle", math.pi * 10**2),
    ("square", 20.0**2),
    ("triangle", 3 * math.sqrt(3) / 4 * 13.0**2),  # equilateral, circumradius 1.3 r
])
def test_coverage_area_matches_geometry(shape, area):
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32) + 0.5
    cov = coverage(shape, 32.0, 32.0, 10.0, xs, ys)
    assert cov.min() >= 0 and cov.max() <= 1
    assert abs(cov.sum() - area) / area < 0.03


def test_render_static_red_circle_on_black():
    frames = render_scene(Scene("black", (track(),), num_frames=3, fps=5), 32, 32)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    assert frames[0, 16, 16].tolist() == list(COLOURS["red"])
    assert frames[0, 0, 0].tolist() == list(BACKGROUNDS["black"])
    assert (frames[0] == frames[2]).all()


def _mask(frame: np.ndarray, colour: str) -> np.ndarray:
    return (np.abs(frame.astype(int) - COLOURS[colour]).sum(-1) < 30)


def test_render_motion_size_and_events():
    moving = track(motion="left", start=(0.7, 0.5), end=(0.3, 0.5), size_change="grows",
                   size_start=0.1, size_end=0.2)
    frames = render_scene(Scene("gray", (moving,), num_frames=5, fps=5), 64, 64)
    xs = [np.nonzero(_mask(f, "red"))[1].mean() for f in frames]
    areas = [_mask(f, "red").sum() for f in frames]
    assert all(a > b for a, b in zip(xs, xs[1:]))  # centroid moves left
    assert all(a < b for a, b in zip(areas, areas[1:]))  # and grows
    appears = track(event="appears", event_time=0.5, colour="blue")
    recolour = track(event="changes_colour", event_time=0.5, colour="green", new_colour="white",
                     start=(0.2, 0.2), end=(0.2, 0.2), size_start=0.1, size_end=0.1)
    f = render_scene(Scene("black", (appears, recolour), num_frames=5, fps=5), 64, 64)
    assert _mask(f[0], "blue").sum() == 0 and _mask(f[4], "blue").sum() > 100
    assert _mask(f[0], "green").sum() > 20 and _mask(f[4], "green").sum() == 0
    assert _mask(f[4], "white").sum() > 20
    gone = track(event="disappears", event_time=0.5)
    f = render_scene(Scene("black", (gone,), num_frames=5, fps=5), 32, 32)
    assert _mask(f[0], "red").sum() > 0 and _mask(f[4], "red").sum() == 0


def test_scenes_keep_shapes_in_frame_and_colours_distinct():
    for i in range(200):
        scene = sample_scene(np.random.default_rng([3, 0, i]), 20, 10)
        colours = [t.colour for t in scene.shapes] + [t.new_colour for t in scene.shapes if t.new_colour]
        assert len(colours) == len(set(colours))
        assert scene.shapes[0].event != "appears"
        for t in scene.shapes:
            for x, y in (t.start, t.end):
                reach = max(t.size_start, t.size_end) * 1.3
                assert reach <= x <= 1 - reach and reach <= y <= 1 - reach


# --- captions --------------------------------------------------------------------------------

def _scenes(n: int, seed: int = 11) -> list[tuple[Scene, list[tuple[str, frozenset[str]]]]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        scene = sample_scene(rng, 20, 10)
        out.append((scene, sc.sample_captions(scene, 5, rng)))
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text))


def test_captions_are_partial_and_true():
    for scene, captions in _scenes(300):
        facts = sc.scene_facts(scene)
        scene_colours = {t.colour for t in scene.shapes} | {t.new_colour for t in scene.shapes}
        for text, mentions in captions:
            assert mentions < facts, (text, sorted(facts))  # strictly fewer than all facts
            words = _words(text)
            # Only the scene's own colours are named, the background only when it is stated.
            assert words & set(COLOURS) <= scene_colours, text
            assert (scene.background in words) == ("background" in mentions), text
            for i, t in enumerate(scene.shapes):
                if f"{i}.colour" in mentions:
                    assert t.colour in words, text
            assert not _states_everything(scene, text), text


def _states_everything(scene: Scene, text: str) -> bool:
    """Direct text check for one-shape scenes where nothing but a motion happens: then the
    background, colour, kind and motion are everything, and a caption must miss one of them."""
    t = scene.shapes[0]
    if len(scene.shapes) > 1 or t.size_change != "none" or t.event != "none":
        return False
    words = _words(text)
    return (scene.background in words and t.colour in words
            and any(n in text for n in sc.SHAPE_NOUNS[t.shape])
            and any(v in text for v in sc.MOTION_VERBS[t.motion]))


def test_captions_vary_in_wording_and_content():
    all_text = []
    for _, captions in _scenes(300):
        texts = [t for t, _ in captions]
        assert len(set(texts)) == len(texts)  # distinct within a video
        assert len({m for _, m in captions}) >= 2  # about different parts of the scene
        all_text += texts
    joined = "\n".join(all_text)
    for synonyms in (sc.MOTION_VERBS["left"], sc.SIZE_VERBS["grows"], sc.SHAPE_NOUNS["square"]):
        used = [s for s in synonyms if re.search(rf"\b{s}\b", joined)]
        assert len(used) >= 3, (synonyms, used)
    assert any(t.startswith("something ") for t in all_text)
    assert any(" while another " in t or " while something else " in t for t in all_text)
    assert len(set(all_text)) > 0.9 * len(all_text)


def test_full_descriptions_state_every_fact_truthfully():
    rng = np.random.default_rng(11)
    for scene, _ in _scenes(100):
        text, mentions = sc.describe_scene(scene, rng)
        assert mentions == sc.scene_facts(scene), text
        words = _words(text)
        assert scene.background in words, text
        for t in scene.shapes:
            assert t.colour in words and any(n in text for n in sc.SHAPE_NOUNS[t.shape]), text
            assert any(v in text for v in sc.MOTION_VERBS[t.motion]), text
            if t.event == "changes_colour":
                assert t.new_colour in words, text
        assert not any(w in text for w in (" later on", " midway", " halfway through", " after a while")), text


# --- the dataset on disk ---------------------------------------------------------------------

def test_small_dataset_tables(small):
    videos = read_videos(small / "videos.parquet")
    captions = read_captions(small / "captions.parquet", videos)
    assert list(videos.columns) == VIDEOS_SCHEMA.names  # no ground-truth columns leak
    assert list(captions.columns) == CAPTIONS_SCHEMA.names
    assert len(videos) == 6 and (videos["split"] == "test").sum() == round(6 * 0.34)
    assert set(videos["split"]) == {"train", "test"}
    assert videos["video_id"].tolist() == [f"synth{i:04d}" for i in range(6)]
    assert (captions.groupby("video_id").size() == 4).all()
    assert captions["caption_id"].tolist()[:2] == ["synth0000#0", "synth0000#1"]
    assert (videos["width"] == 32).all() and (videos["height"] == 32).all()
    assert (videos["fps"] == 5.0).all() and (videos["dataset"] == "synthetic").all()
    assert videos["num_frames"].between(5, 10).all()
    np.testing.assert_allclose(videos["duration"], videos["num_frames"] / 5.0)
    for path in videos["path"]:
        assert path.startswith(str(small / "videos")) and Path(path).is_file()
    summary = read_json(small / "summary.json")
    assert summary["videos"] == {"train": 4, "test": 2} and summary["skipped"] == []


def test_truth_file_matches_tables_and_video(small):
    truth = read_json(small / "synthetic_truth.json")
    videos = read_videos(small / "videos.parquet")
    captions = read_captions(small / "captions.parquet")
    assert set(truth) == set(videos["video_id"])
    for vid, texts in captions.groupby("video_id")["text"]:
        assert [c["text"] for c in truth[vid]["captions"]] == list(texts)
        for c in truth[vid]["captions"]:
            assert set(c["mentions"]) < set(truth[vid]["facts"])
    # The encoded video decodes to (nearly) the rendered frames of its scene.
    row = videos.iloc[0]
    t = truth[row["video_id"]]["scene"]
    scene = Scene(t["background"], tuple(ShapeTrack(**{**s, "start": tuple(s["start"]),
                                                       "end": tuple(s["end"])}) for s in t["shapes"]),
                  t["num_frames"], t["fps"])
    with av.open(row["path"]) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    rendered = render_scene(scene, 32, 32)
    assert decoded.shape == rendered.shape
    assert np.abs(decoded.astype(int) - rendered).mean() < 6


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
    again = tmp_path / "again"
    prepare(config(), again)
    for name in ("videos.parquet", "captions.parquet"):
        a = pd.read_parquet(small / name)
        b = pd.read_parquet(again / name)
        if "path" in a:  # paths name their own output folder
            a["path"] = a["path"].str.replace(str(small), "", regex=False)
            b["path"] = b["path"].str.replace(str(again), "", regex=False)
        pd.testing.assert_frame_equal(a, b)
    assert md5s(small / "videos") == md5s(again / "videos")
    assert read_json(small / "synthetic_truth.json") == read_json(again / "synthetic_truth.json")

    other = tmp_path / "other"
    prepare(config(replace(SMALL, seed=8)), other)
    a, b = md5s(small / "videos"), md5s(other / "videos")
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a)
    assert (pd.read_parquet(small / "captions.parquet")["text"].tolist()
            != pd.read_parquet(other / "captions.parquet")["text"].tolist())


@pytest.mark.parametrize("change, message", [
    (dict(width=33), "width must be even"),
    (dict(height=8), "height must be even and >= 16"),
    (dict(test_fraction=0.0), "test_fraction must be in (0, 1)"),
    (dict(val_fraction=-0.1), "val_fraction must be in [0, 1)"),
    (dict(test_fraction=0.5, val_fraction=0.5), "leave no training video"),
    (dict(num_videos=1), "num_videos must be >= 2"),
    (dict(captions_per_video=0), "captions_per_video must be >= 1"),
    (dict(min_seconds=3.0, max_seconds=2.0), "min_seconds <= max_seconds"),
    (dict(min_seconds=0.1, max_seconds=0.1), "at least 2 frames"),
    (dict(seed=-1), "seed must be >= 0"),
])
def test_synthetic_config_errors(change, message):
    with pytest.raises(ValueError) as err:
        replace(SMALL, **change)
    assert message in str(err.value)


def test_test_count_keeps_both_splits():
    assert replace(SMALL, num_videos=200, test_fraction=0.25).test_count() == 50
    assert replace(SMALL, num_videos=3, test_fraction=0.01).test_count() == 1
    assert replace(SMALL, num_videos=3, test_fraction=0.99).test_count() == 2
    three = replace(SMALL, num_videos=200, test_fraction=0.2, val_fraction=0.15)
    assert (three.train_count(), three.val_count(), three.test_count()) == (130, 30, 40)


def test_a_validation_split_is_carved_from_train_and_leaves_the_test_split_alone(tmp_path):
    """Same seed with and without val: identical test videos and clips; val videos were train."""
    from pipeline.data.synthetic import build_synthetic

    config = replace(SMALL, num_videos=10, test_fraction=0.2, captions_per_video=1, max_seconds=1.0)
    plain, _ = build_synthetic(config, tmp_path / "a", tmp_path / "a")
    with_val, truth = build_synthetic(replace(config, val_fraction=0.3), tmp_path / "b", tmp_path / "b")
    before = {v.video_id: v.split for v in plain.videos}
    after = {v.video_id: v.split for v in with_val.videos}
    assert sorted(after.values()).count("val") == 3 and sorted(after.values()).count("test") == 2
    assert {v for v, s in after.items() if s == "test"} == {v for v, s in before.items() if s == "test"}
    assert all(before[v] == "train" for v, s in after.items() if s == "val")
    assert all(truth[v]["split"] == s for v, s in after.items())
    assert plain.texts == with_val.texts
    for v in before:
        assert (tmp_path / "a" / "videos" / f"{v}.mp4").read_bytes() == (tmp_path / "b" / "videos" / f"{v}.mp4").read_bytes()


def test_truth_records_each_captions_final_plan(small):
    from pipeline.data.synth_likelihood import likelihood, signature

    truth = read_json(small / "synthetic_truth.json")
    for rec in truth.values():
        for cap in rec["captions"]:
            p = cap["plan"]
            assert set(p) == {"template", "background", "clauses"}
            plan = sc._Plan(p["template"], [sc._Clause(c["shape"], c["np"], c["verbs"]) for c in p["clauses"]],
                            p["background"])
            assert sorted(plan.mentions()) == cap["mentions"]  # the plan says what the caption states
            assert likelihood(signature(p, rec["scene"]), rec["scene"]) > 0


def test_plans_come_from_the_same_draws():
    # sample_captions is sample_planned_captions without the plans: same captions, same RNG use
    for i in range(30):
        scene = sample_scene(np.random.default_rng([13, 0, i]), 20, 10)
        a, b = np.random.default_rng([13, 1, i]), np.random.default_rng([13, 1, i])
        planned = sc.sample_planned_captions(scene, 5, a)
        assert [(c.text, c.mentions) for c in planned] == sc.sample_captions(scene, 5, b)
        assert a.bit_generator.state == b.bit_generator.state
        one_a, one_b = np.random.default_rng(i), np.random.default_rng(i)
        assert sc.sample_caption(scene, one_a) == sc.sample_planned_caption(scene, one_b)[:2]
