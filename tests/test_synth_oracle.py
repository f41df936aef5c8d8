"""The synthetic oracle ceiling: value-level consistency and exact expected recall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.data.synth_oracle import (Claim, ShapeClaim, caption_claim, ceiling_from_matrix, chance,
                                        consistency_matrix, consistent, controls, recall_at, split_truth)


def shape(colour="red", kind="circle", motion="left", size="none", event="none", new=""):
    return {"colour": colour, "shape": kind, "motion": motion, "size_change": size, "event": event,
            "new_colour": new}


def scene(background="black", *shapes):
    return {"background": background, "shapes": list(shapes)}


def record(split, sc, *mentions):
    return {"split": split, "scene": sc, "captions": [{"text": "-", "mentions": list(m)} for m in mentions]}


def test_claim_reads_values_by_slot_of_its_own_scene():
    sc = scene("navy", shape("red", "circle", "left"), shape("blue", "square", "up", "grows", "changes_colour", "green"))
    claim = caption_claim(sc, ["1.colour", "1.event", "background"])
    assert claim.background == "navy"
    assert claim.shapes == (ShapeClaim((("colour", "blue"), ("event", "changes_colour:green"))),)


def test_consistency_is_by_value_not_slot():
    # The caption talks about the second shape of its scene (a blue square); a scene with a blue
    # square in slot 0 is consistent, one with a blue circle is not.
    claim = Claim(None, (ShapeClaim((("colour", "blue"), ("shape", "square"))),))
    assert consistent(scene("gray", shape("blue", "square")), claim)
    assert consistent(scene("gray", shape("red"), shape("blue", "square")), claim)
    assert not consistent(scene("gray", shape("blue", "circle")), claim)


def test_two_shape_claims_need_two_distinct_shapes():
    claim = Claim(None, (ShapeClaim((("colour", "red"),)), ShapeClaim((("motion", "left"),))))
    assert not consistent(scene("black", shape("red", motion="left")), claim)  # one shape can't be both
    assert consistent(scene("black", shape("red", motion="up"), shape("green", motion="left")), claim)
    assert consistent(scene("black", shape("green", motion="left"), shape("red", motion="up")), claim)


def test_background_colour_change_and_size_values():
    sc = scene("brown", shape("red", size="shrinks", event="changes_colour", new="white"))
    assert consistent(sc, Claim("brown", (ShapeClaim((("size", "shrinks"),)),)))
    assert not consistent(sc, Claim("black", ()))
    # The stated colour is the starting one; the new colour only through the event.
    assert not consistent(sc, Claim(None, (ShapeClaim((("colour", "white"),)),)))
    assert not consistent(sc, Claim(None, (ShapeClaim((("event", "changes_colour:blue"),)),)))


def test_bad_facts_raise():
    with pytest.raises(ValueError, match="unknown fact"):
        caption_claim(scene("black", shape()), ["0.speed"])
    with pytest.raises(ValueError, match="names shape 1"):
        caption_claim(scene("black", shape()), ["1.colour"])


def test_recall_at_closed_forms():
    assert recall_at(1, 1, 1) == 1.0
    assert recall_at(4, 1, 1) == 0.25
    assert recall_at(4, 1, 3) == 0.75
    assert recall_at(4, 1, 10) == 1.0
    # m = 2 of c = 5: P(top 1 holds one) = 2/5; P(top 2 holds one) = 1 - C(3,2)/C(5,2) = 0.7.
    assert recall_at(5, 2, 1) == pytest.approx(0.4)
    assert recall_at(5, 2, 2) == pytest.approx(0.7)
    assert recall_at(5, 2, 4) == 1.0
    with pytest.raises(ValueError):
        recall_at(2, 3, 1)


def test_recall_at_matches_simulation():
    rng = np.random.default_rng(0)
    c, m, k = 9, 3, 2
    hits = [bool((rng.permutation(c)[:k] < m).any()) for _ in range(20000)]
    assert np.mean(hits) == pytest.approx(recall_at(c, m, k), abs=0.01)


def test_ceiling_on_a_hand_made_truth():
    truth = {
        "a": record("test", scene("black", shape("red", "circle", "left")), ["0.colour"], ["0.motion", "background"]),
        "b": record("test", scene("black", shape("red", "square", "up")), ["0.colour"], ["0.shape"]),
        "c": record("test", scene("gray", shape("blue", "circle", "left")), ["0.shape"], ["0.motion"]),
        "z": record("train", scene("black", shape()), ["0.colour"]),
    }
    part = split_truth(truth)
    assert part.video_ids == ["a", "b", "c"]
    match = consistency_matrix(part)
    expected = np.array([
        [1, 1, 0],  # a: "red"            -> a, b
        [1, 0, 0],  # a: moves left, black -> a only (c is left but gray)
        [1, 1, 0],  # b: "red"            -> a, b
        [0, 1, 0],  # b: "square"         -> b
        [1, 0, 1],  # c: "circle"         -> a, c
        [1, 0, 1],  # c: "moves left"     -> a, c
    ], dtype=bool)
    np.testing.assert_array_equal(match, expected)
    ceiling = ceiling_from_matrix(match, part.caption_video, ks=(1, 2))
    assert ceiling.t2v[1] == pytest.approx(100 * (0.5 + 1 + 0.5 + 1 + 0.5 + 0.5) / 6)
    assert ceiling.t2v[2] == pytest.approx(100.0)
    # v2t: a is consistent with 5 captions (2 own), b with 3 (2 own), c with 2 (2 own).
    v1 = (2 / 5 + 2 / 3 + 1.0) / 3
    v2 = ((1 - math.comb(3, 2) / math.comb(5, 2)) + 1.0 + 1.0) / 3
    assert ceiling.v2t[1] == pytest.approx(100 * v1)
    assert ceiling.v2t[2] == pytest.approx(100 * v2)
    out = controls(truth, ks=(1, 2))
    assert out["oracle"]["t2v"]["R1"] == pytest.approx(ceiling.t2v[1])
    assert out["chance"]["t2v"]["R1"] == pytest.approx(100 / 3)
    assert out["counts"] == {"videos": 3, "captions": 6}


def test_chance_v2t_with_several_captions():
    # 2 videos x 2 captions: a random order of 4 captions puts one of a video's 2 first w.p. 1/2.
    rand = chance(np.array([0, 0, 1, 1]), 2, ks=(1,))
    assert rand.v2t[1] == pytest.approx(50.0)
    assert rand.t2v[1] == pytest.approx(50.0)


def test_own_video_must_be_consistent():
    # A truth whose mention record contradicts nothing still passes; a tampered one fails.
    truth = {"a": record("test", scene("black", shape()), ["0.colour"]),
             "b": record("test", scene("black", shape("blue")), ["0.colour"])}
    part = split_truth(truth)
    part.claims[0] = Claim(None, (ShapeClaim((("colour", "green"),)),))
    with pytest.raises(ValueError, match="not consistent with its own video"):
        consistency_matrix(part)
