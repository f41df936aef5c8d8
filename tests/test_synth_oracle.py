"""The synthetic controls: value-level consistency, the consistency reference and the Bayes
ceiling (exact likelihoods of the generator's final plans), with exact expected recall."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction as F

import numpy as np
import pytest

from pipeline.data.synth_captions import _Clause, _Plan, sample_planned_caption, sample_planned_captions
from pipeline.data.synth_likelihood import (likelihood, plan_distribution, plan_key, signature,
                                            signature_distribution)
from pipeline.data.synth_oracle import (Claim, ShapeClaim, bayes_ceiling, caption_claim, ceiling_from_matrix,
                                        chance, consistency_matrix, consistent, controls, recall_at, split_truth,
                                        tie_aware_recall)
from pipeline.data.synth_scene import Scene, ShapeTrack, sample_scene


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
    assert out["consistent_uniform"]["t2v"]["R1"] == pytest.approx(ceiling.t2v[1])
    assert "bayes_ceiling" not in out  # these captions record no plans
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


# --- the likelihood of final plans (synth_likelihood) ---------------------------------------

def track(shape="circle", colour="red", motion="left", size="none", event="none", new="") -> ShapeTrack:
    return ShapeTrack(shape, colour, motion, size, event, 0.5 if event != "none" else 0.0, new,
                      (0.5, 0.5), (0.5, 0.5), 0.1, 0.1)


# A lone shape doing one thing (blurring from one verb), a lone shape doing two (blurring from two
# verbs), two circles both moving left (clauses of different slots share signatures).
MC_SCENES = [Scene("black", (track(motion="static"),), 20, 10),
             Scene("navy", (track("square", "blue", "up", "grows"),), 20, 10),
             Scene("gray", (track("circle", "red", "left"),
                            track("circle", "green", "left", "shrinks", "appears")), 20, 10)]


def plan(template, background, *clauses):
    """A plan record; clauses are (slot, level, verbs)."""
    return {"template": template, "background": background,
            "clauses": [{"shape": i, "np": lvl, "verbs": list(v)} for i, lvl, v in clauses]}


def mentions(p) -> list[str]:
    return sorted(_Plan(p["template"], [_Clause(c["shape"], c["np"], c["verbs"]) for c in p["clauses"]],
                        p["background"]).mentions())


def test_final_plans_sum_to_one():
    scenes = MC_SCENES + [sample_scene(np.random.default_rng([5, 0, i]), 20, 10) for i in range(60)]
    for sc in scenes:
        plans, sigs = plan_distribution(sc), signature_distribution(sc)
        assert sum(plans.values()) == 1 and sum(sigs.values()) == 1  # exact fractions
        assert all(p > 0 for p in plans.values())
        assert len(sigs) <= len(plans)


@pytest.mark.parametrize("index", range(len(MC_SCENES)))
def test_enumeration_matches_the_generator(index):
    """20k draws of sample_caption: every final plan and signature within 4.5 binomial sd."""
    sc, n = MC_SCENES[index], 20000
    rng = np.random.default_rng([21, index])
    draws = [sample_planned_caption(sc, rng) for _ in range(n)]
    for exact, key in ((plan_distribution(sc), lambda c: plan_key(c.plan)),
                       (signature_distribution(sc), lambda c: signature(c.plan, sc))):
        counts = Counter(key(c) for c in draws)
        assert set(counts) <= set(exact)  # nothing drawn that the enumeration calls impossible
        for outcome, p in exact.items():
            p = float(p)
            assert abs(counts[outcome] / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12, outcome
    if index == 0:  # the blurring path is exercised: "a red circle stays still on black" never drawn
        full = plan_key(plan("action", "suffix", (0, "full", ["motion"])))
        assert full not in plan_distribution(sc) and all(plan_key(c.plan) != full for c in draws)


def test_likelihoods_by_hand():
    one = {"background": "black", "shapes": [vars(track())]}  # a red circle moving left
    two = {"background": "black", "shapes": [vars(track()), vars(track("square", "blue", "up", "grows"))]}
    red_circle_left = plan("action", "", (0, "full", ["motion"]))
    sig = signature(red_circle_left, one)
    assert sig == ("action", "", "", (("full", (("colour", "red"), ("shape", "circle")), (("motion", "left"),)),))
    # one shape: templates one_verb .4 / presence .1; "" background .7; full .45
    assert likelihood(sig, one) == F("0.4") / F("0.5") * F("0.7") * F("0.45")
    # two shapes (the square is rich): all five templates, weights sum to 1; slot 1 of 2
    assert likelihood(sig, two) == F("0.4") * F(1, 2) * F("0.7") * F("0.45")
    # blurring: "a red shape moves left on a black background" is drawn as such, or drawn in full
    # and blurred to the colour (half the time); a two-shape scene never blurs one clause.
    red_on_black = signature(plan("action", "suffix", (0, "colour", ["motion"])), one)
    assert likelihood(red_on_black, one) == F("0.8") * F("0.2") * (F("0.2") + F("0.45") / 2)
    assert likelihood(red_on_black, two) == F("0.4") * F(1, 2) * F("0.2") * F("0.2")
    # consistent but impossible: everything about a lone shape is never said (it gets blurred)
    everything = signature(plan("action", "suffix", (0, "full", ["motion"])), two)
    assert likelihood(everything, two) > 0 and likelihood(everything, one) == 0
    assert consistent(one, Claim("black", (ShapeClaim((("colour", "red"), ("motion", "left"),
                                                        ("shape", "circle"))),)))
    # a pair: order (1, 0) 1/2, the square's colour .2 and one of its 2 verbs, "another shape" .15
    pair = signature(plan("action", "", (1, "colour", ["size"]), (0, "other", ["motion"])), two)
    assert likelihood(pair, two) == F("0.2") * F(1, 2) * F("0.2") * F(1, 2) * F("0.15")
    assert likelihood(pair, one) == 0
    # a colour change carries its new colour, and the scene's must match it
    turns = {"background": "gray", "shapes": [vars(track(event="changes_colour", new="blue"))]}
    sig = signature(plan("action", "", (0, "vague", ["event"])), turns)
    assert sig[3][0][2] == (("event", "changes_colour:blue"),)
    other = {"background": "gray", "shapes": [vars(track(event="changes_colour", new="white"))]}
    assert likelihood(sig, turns) > 0 and likelihood(sig, other) == 0


def test_a_caption_text_determines_its_signature():
    """Why P(text | scene) is proportional to P(signature | scene): no text has two signatures."""
    seen: dict[str, tuple] = {}
    for i in range(150):
        rng = np.random.default_rng([9, 0, i])
        sc = sample_scene(rng, 20, 10)
        for _ in range(20):
            c = sample_planned_caption(sc, rng)
            assert seen.setdefault(c.text, signature(c.plan, sc)) == signature(c.plan, sc), c.text


def generated_truth(videos: int, seed: int = 0, captions: int = 5) -> dict:
    """A test split drawn like the dataset's (scenes and captions, no pixels)."""
    truth = {}
    for i in range(videos):
        rng = np.random.default_rng([seed, 0, i])
        sc = sample_scene(rng, 20, 10)
        caps = sample_planned_captions(sc, captions, rng)
        truth[f"v{i:03d}"] = {"split": "test", "scene": sc.to_dict(),
                              "captions": [{"text": c.text, "mentions": sorted(c.mentions), "plan": c.plan}
                                           for c in caps]}
    return truth


def test_likelihood_is_positive_for_the_own_scene_and_zero_when_inconsistent():
    part = split_truth(generated_truth(60))
    match = consistency_matrix(part)
    lik = bayes_ceiling(part).likelihood
    assert (lik[np.arange(len(part.claims)), part.caption_video] > 0).all()
    assert (lik[~match] == 0).all()  # possible => consistent (the converse fails by blurring)


def test_bayes_ceiling_beats_the_consistency_reference_and_chance():
    out = controls(generated_truth(120, seed=3))
    for direction in ("t2v", "v2t"):
        for k in ("R1", "R5", "R10"):
            bayes, reference, rand = (out[n][direction][k] for n in ("bayes_ceiling", "consistent_uniform", "chance"))
            assert bayes >= reference >= rand, (direction, k)
        assert out["bayes_ceiling"][direction]["R1"] > out["consistent_uniform"][direction]["R1"]


def test_tie_aware_recall_closed_form():
    # t2v: h = 1 above, e = 4 tied with the target: P(rank <= k) = clip((k - 1) / 4, 0, 1)
    scores = np.array([[5, 3, 3, 3, 3, 1]])
    own = np.array([[0, 0, 1, 0, 0, 0]], dtype=bool)
    for k in range(1, 7):
        assert tie_aware_recall(scores, own, k)[0] == pytest.approx(min(max((k - 1) / 4, 0), 1))
    # several targets, the best tied with others: against every tie order
    own = np.array([[0, 1, 1, 0, 0, 1]], dtype=bool)
    for k in range(1, 7):
        assert tie_aware_recall(scores, own, k)[0] == pytest.approx(brute_recall(scores[0], own[0], k))


def brute_recall(scores, own, k) -> float:
    """Average over every order of the items that sorts the scores descending (random tie-breaking)."""
    hits = [own[list(order[:k])].any() for order in itertools.permutations(range(len(scores)))
            if all(scores[a] >= scores[b] for a, b in zip(order, order[1:]))]
    return float(np.mean(hits))


def test_bayes_ceiling_on_a_hand_made_split():
    circle = shape("red", "circle", "left")
    a, c = scene("black", circle), scene("black", circle, shape("blue", "square", "up", "grows"))
    plans = {"a": [plan("action", "", (0, "full", ["motion"])), plan("presence", "suffix", (0, "shape", []))],
             "b": [plan("action", "suffix", (0, "colour", ["motion"])), plan("action", "lead", (0, "vague", ["motion"]))],
             "c": [plan("action", "", (1, "colour", ["size"]), (0, "other", ["motion"])),
                   plan("action", "", (1, "full", ["motion", "size"]))]}
    truth = {vid: {"split": "test", "scene": c if vid == "c" else a,  # a and b: the same scene
                   "captions": [{"text": "-", "mentions": mentions(p), "plan": p} for p in ps]}
             for vid, ps in plans.items()}
    part = split_truth(truth)
    # By hand (weights of synth_captions): one shape -> one_verb .8 / presence .2; two shapes
    # (the square is rich) -> one_verb .4, two_verbs .2, pair .2, presence .1, presence_pair .1.
    by_hand = [
        [F("0.8") * F("0.7") * F("0.45")] * 2 + [F("0.4") / 2 * F("0.7") * F("0.45")],  # full, no background
        [F("0.2") * F(20, 85)] * 2 + [F("0.1") / 2 * F(20, 85)],  # presence, "a circle"; no vague level
        [F("0.8") * F("0.2") * (F("0.2") + F("0.45") / 2)] * 2 + [F("0.4") / 2 * F("0.2") * F("0.2")],
        [F("0.8") * F("0.1") * F("0.15")] * 2 + [F("0.4") / 2 * F("0.1") * F("0.15")],  # vague, lead
        [0, 0, F("0.2") / 2 * F("0.2") / 2 * F("0.15")],  # pair: order, colour, 1 of 2 verbs, other
        [0, 0, F("0.2") * F("0.7") * F("0.45")],  # two verbs of the only rich shape, full
    ]
    ceiling = bayes_ceiling(part, ks=(1, 2, 3))
    np.testing.assert_allclose(ceiling.likelihood, np.array(by_hand, dtype=float), rtol=1e-12)
    own = np.zeros((6, 3), dtype=bool)
    own[np.arange(6), part.caption_video] = True
    post = [[x / sum(row) for x in row] for row in by_hand]
    # exact ties: video a's captions and b's vague one all have posterior 4/9 for a (and b)
    assert post[0][0] == post[1][0] == post[3][0] == F(4, 9)
    for k in (1, 2, 3):
        t2v = np.mean([brute_recall(np.array(row, dtype=object), own[i], k) for i, row in enumerate(by_hand)])
        v2t = np.mean([brute_recall(np.array([post[i][j] for i in range(6)], dtype=object), own[:, j], k)
                       for j in range(3)])
        assert ceiling.t2v[k] == pytest.approx(100 * t2v) and ceiling.v2t[k] == pytest.approx(100 * v2t)
    # the values themselves: t2v ties a/b (1/2 at R@1); v2t: video a has b's colour caption above
    # its own 4/9 block of three (2 of them its own): R@1 0, R@2 2/3
    assert ceiling.t2v[1] == pytest.approx(100 * 4 / 6) and ceiling.t2v[2] == pytest.approx(100.0)
    assert ceiling.v2t[1] == pytest.approx(100 * 2 / 3) and ceiling.v2t[2] == pytest.approx(100 * (2 / 3 + 2) / 3)
    out = controls(truth, ks=(1, 2))
    assert out["bayes_ceiling"]["t2v"]["R1"] == pytest.approx(ceiling.t2v[1])
    # without plans (an older truth file) there is no Bayes ceiling
    with pytest.raises(ValueError, match="no caption plans"):
        bayes_ceiling(split_truth({v: {**r, "captions": [{k: x for k, x in cap.items() if k != "plan"}
                                                          for cap in r["captions"]]} for v, r in truth.items()}))
