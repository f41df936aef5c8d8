"""Offline taggers: pixels -> visual tags, caption words -> textual tags, temperature sampling."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from pipeline.config import from_mapping
from pipeline.tags.blobs import (background_colour, colour_codes, colour_names, decode_frames, find_blobs,
                                 palette, rgb_to_hsv)
from pipeline.tags.lexicon import load_lexicon, load_stopwords, parse_lexicon
from pipeline.tags.offline_text import OfflineTextConfig, caption_concepts, match_concepts, tag_caption, tokenize
from pipeline.tags.offline_visual import (ObjectEvents, OfflineVisualConfig, analyse_video, tag_frames,
                                          video_concepts)
from pipeline.tags.parse import parse_response
from pipeline.tags.sampling import Concept, SamplingConfig, sample_tags
from pipeline.tags.seeds import derive_seed
from tests.tags_fake_server import default_params, draw_frames

LEX = load_lexicon()
STOP = load_stopwords()
VCFG = from_mapping(OfflineVisualConfig, default_params()["tag_video"]["offline"], "test")
TCFG = from_mapping(OfflineTextConfig, default_params()["tag_text"]["offline"], "test")
RED, BLUE, YELLOW, GREEN, PURPLE = (220, 30, 30), (40, 80, 230), (240, 220, 30), (40, 200, 60), (140, 40, 170)


# -- pixels ------------------------------------------------------------------------------------

def test_hsv_matches_colorsys():
    rgb = np.random.default_rng(0).integers(0, 256, size=(200, 3), dtype=np.uint8)
    h, s, v = rgb_to_hsv(rgb)
    for i, (r, g, b) in enumerate(rgb.tolist()):
        eh, es, ev = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert h[i] == pytest.approx((eh * 360) % 360, abs=1e-9) or es == 0
        assert (s[i], v[i]) == pytest.approx((es, ev), abs=1e-12)


@pytest.mark.parametrize("rgb, name", [
    (RED, "red"), ((250, 140, 20), "orange"), (YELLOW, "yellow"), (GREEN, "green"), (BLUE, "blue"),
    (PURPLE, "purple"), ((255, 255, 255), "white"), ((20, 20, 20), "black"), ((128, 128, 128), "grey"),
    ((120, 70, 20), "brown"), ((30, 200, 210), "cyan"), ((230, 60, 150), "pink")])
def test_colour_names(rgb, name):
    assert colour_names(np.array([rgb], dtype=np.uint8), LEX.hues, VCFG.min_saturation)[0] == name


@pytest.mark.parametrize("shape, lo, hi", [("square", 0.9, 1.0), ("circle", 0.7, 0.86),
                                           ("triangle", 0.4, 0.62)])
def test_blob_geometry_from_pixels(shape, lo, hi):
    frames = decode_frames(draw_frames((30, 30, 30), [dict(shape=shape, colour=RED, x0=48, y0=40,
                                                           x1=48, y1=40, r0=16, r1=16)], n=2))
    bg = background_colour(frames)
    assert np.abs(bg - 30).max() <= 3
    codes = colour_codes(frames[0], LEX.hues, VCFG.min_saturation)
    (blob,) = find_blobs(frames[0], 0, bg, codes, palette(LEX.hues), VCFG.foreground_threshold,
                         VCFG.min_blob_area)
    fg = np.linalg.norm(frames[0].astype(float) - bg, axis=-1) > VCFG.foreground_threshold
    ys, xs = np.nonzero(fg)
    assert blob.colour == "red" and not blob.touches_border
    assert blob.area == pytest.approx(fg.sum() / 96**2, rel=0.1)
    assert (blob.cx, blob.cy) == pytest.approx(((xs.mean() + 0.5) / 96, (ys.mean() + 0.5) / 96), abs=0.02)
    assert lo <= blob.fill <= hi
    assert (blob.skew > 0.1) == (shape == "triangle")  # centroid 1/6 below the box centre


SCENES = {
    "red square slides left and grows": (
        (30, 30, 30), [dict(shape="square", colour=RED, x0=70, y0=48, x1=25, y1=48, r0=8, r1=14)],
        [ObjectEvents(("red",), "square", "leftward", "growth", False, False)], "black"),
    "blue circle appears midway, falls": (
        (240, 240, 240), [dict(shape="circle", colour=BLUE, x0=48, y0=20, x1=48, y1=75, r0=10, r1=10, start=3)],
        [ObjectEvents(("blue",), "circle", "downward", None, True, False)], "white"),
    "yellow triangle turns green, shrinks, vanishes": (
        (128, 128, 128), [dict(shape="triangle", colour=YELLOW, colour2=GREEN, switch=4, x0=30, y0=60,
                               x1=30, y1=60, r0=14, r1=6, end=5)],
        [ObjectEvents(("yellow", "green"), "triangle", None, "shrinking", False, True)], "grey"),
    "two objects: purple circle right, red square up": (
        (20, 40, 150), [dict(shape="circle", colour=PURPLE, x0=15, y0=25, x1=80, y1=25, r0=9, r1=9),
                        dict(shape="square", colour=RED, x0=60, y0=80, x1=60, y1=50, r0=8, r1=8)],
        [ObjectEvents(("purple",), "circle", "rightward", None, False, False),
         ObjectEvents(("red",), "square", "upward", None, False, False)], "blue"),
}


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_video_events_from_pixels(scene):
    background, objects, expected, bg_name = SCENES[scene]
    bg, events = analyse_video(draw_frames(background, objects), LEX, VCFG)
    assert bg == bg_name
    assert sorted(events, key=repr) == sorted(expected, key=repr)


def test_video_concepts_name_what_happens():
    _, objects, _, _ = SCENES["red square slides left and grows"]
    bg, events = analyse_video(draw_frames((30, 30, 30), objects), LEX, VCFG)
    phrases = {c.phrases[0] for c in video_concepts(bg, events, LEX, VCFG)}
    assert {"red square", "red", "square", "colour", "geometry", "motion", "leftward motion",
            "growth", "single object", "black background", "background"} == phrases


def test_visual_answers_vary_with_temperature_and_repeat_with_seed():
    _, objects, _, _ = SCENES["two objects: purple circle right, red square up"]
    frames = draw_frames((20, 40, 150), objects)
    answers = {t: tag_frames(frames, t, derive_seed(1, "v", t), LEX, VCFG) for t in (0.7, 0.8, 0.9, 1.0)}
    assert len(set(answers.values())) == 4
    assert tag_frames(frames, 0.7, derive_seed(1, "v", 0.7), LEX, VCFG) == answers[0.7]
    for text in answers.values():
        parsed = parse_response(text)
        assert parsed.status == "ok" and len(parsed.items) == 10 == len(set(parsed.items))


# -- caption words ----------------------------------------------------------------------------

def test_caption_words_map_to_general_concepts():
    tokens = tokenize("A red square gets bigger, then the blue ball slides to the left.")
    names, unmatched = match_concepts(tokens, LEX)
    assert names == ["colour", "red", "geometry", "square", "growth", "sequence", "colour", "blue",
                     "geometry", "circle", "motion", "leftward"]
    assert unmatched == ["a", "the", "to", "the"]
    concepts = caption_concepts("A red square gets bigger while a zebra watches", LEX, STOP, TCFG)
    by_name = {c.name: c for c in concepts}
    assert by_name["growth"].phrases[0] == "growth"
    assert by_name["word:zebra"].salience == TCFG.unknown_word_salience
    assert "word:a" not in by_name  # stopwords never become tags
    assert by_name["colour"].salience == LEX.concepts["colour"].salience  # one mention, no bonus
    twice = {c.name: c for c in caption_concepts("red and blue", LEX, STOP, TCFG)}
    assert twice["colour"].salience == pytest.approx(LEX.concepts["colour"].salience + TCFG.mention_bonus)


def test_text_answers_vary_with_temperature():
    caption = "a green triangle moves up and then disappears"
    answers = [tag_caption(caption, t, derive_seed(5, "c", t), LEX, STOP, TCFG) for t in (0.7, 0.8, 0.9, 1.0)]
    assert len(set(answers)) == 4
    assert answers[0] == tag_caption(caption, 0.7, derive_seed(5, "c", 0.7), LEX, STOP, TCFG)
    low = tag_caption(caption, 0.0, 3, LEX, STOP, TCFG)  # greedy: salience order, typical phrasing
    assert parse_response(low).items[:4] == ["motion", "upward motion", "disappearance", "triangle"]


# -- sampling ----------------------------------------------------------------------------------

SAMPLING = SamplingConfig(num_tags=5, order_noise=0.6, synonym_decay=1.5, extra_synonym_prob=0.3,
                          filler_prob=0.3)
CONCEPTS = [Concept(f"c{i}", 3.0 - 0.3 * i, (f"tag{i}", f"syn{i}a", f"syn{i}b")) for i in range(6)]


def test_zero_temperature_is_greedy():
    tags = sample_tags(CONCEPTS, ["filler"], 0.0, np.random.default_rng(0), SAMPLING)
    assert tags == ["tag0", "tag1", "tag2", "tag3", "tag4"]


def test_temperature_increases_variety():
    def variety(t):
        non_canonical, out_of_order = 0, 0
        for seed in range(300):
            tags = sample_tags(CONCEPTS, ["filler"], t, np.random.default_rng(seed), SAMPLING)
            non_canonical += sum(not x.startswith("tag") for x in tags)
            ranks = [int(x[3]) for x in tags if x != "filler"]  # concept index of tagN/synNx
            out_of_order += sum(a > b for a, b in zip(ranks, ranks[1:]))
        return non_canonical, out_of_order
    results = [variety(t) for t in (0.7, 0.8, 0.9, 1.0)]
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(results, results[1:]))


def test_short_lists_are_padded_with_synonyms_before_fillers():
    one = [Concept("growth", 2.0, ("growth", "expansion", "enlargement")),
           Concept("red", 1.0, ("red", "redness"))]
    tags = sample_tags(one, ["f1", "f2", "f3"], 0.0, np.random.default_rng(0), SAMPLING)
    assert tags[:2] == ["growth", "red"]
    assert sorted(tags[2:]) == ["enlargement", "expansion", "redness"]
    cfg = SamplingConfig(num_tags=7, order_noise=0.6, synonym_decay=1.5, extra_synonym_prob=0.3,
                         filler_prob=0.0)
    tags = sample_tags(one, ["f1", "f2", "f3"], 1.0, np.random.default_rng(1), cfg)
    assert sorted(tags[:5]) == sorted(["growth", "expansion", "enlargement", "red", "redness"])
    assert sorted(tags[5:]) in (["f1", "f2"], ["f1", "f3"], ["f2", "f3"])
    slipped = sum(any(t.startswith("f") for t in sample_tags(one, ["f1"], 1.0, np.random.default_rng(s),
                                                             SAMPLING)) for s in range(400))
    assert 0.2 * 400 < slipped < 0.4 * 400  # filler_prob * T = 0.3


def test_sampled_tags_are_distinct_and_capped():
    for seed in range(50):
        tags = sample_tags(CONCEPTS, ["f1", "f2"], 1.0, np.random.default_rng(seed),
                           SamplingConfig(8, 1.0, 0.5, 1.0, 0.5))
        assert len(tags) == 8 == len(set(tags))


def test_lexicon_validation_names_the_problem(tmp_path):
    data = json.loads((LEX_PATH := __import__("pipeline.tags.lexicon", fromlist=["x"]).BUILTIN_LEXICON).read_text())
    data["text_words"]["zooms"] = ["warp speed"]
    with pytest.raises(ValueError, match=r"text_words\['zooms'\] names unknown concepts \['warp speed'\]"):
        parse_lexicon(data, str(LEX_PATH), "x")
    del data["templates"]
    with pytest.raises(ValueError, match="missing key 'templates'"):
        parse_lexicon(data, "lex.json", "x")
