"""Tag controls: shuffled (a derangement within a split) and oracle (truth in the tagger's words)."""

from __future__ import annotations

import io
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from pipeline.config import from_mapping
from pipeline.data.synth_render import render_scene
from pipeline.data.synth_scene import Scene, ShapeTrack
from pipeline.features.tag_control import (controlled_tags, derangement, oracle_answer, oracle_visual_tags,
                                           scene_objects, shuffled_tags)
from pipeline.tags.lexicon import load_lexicon
from pipeline.tags.offline_visual import OfflineVisualConfig, analyse_video, tag_frames
from pipeline.tags.seeds import derive_seed
from tests.tags_fake_server import default_params

LEX = load_lexicon()
VCFG = from_mapping(OfflineVisualConfig, default_params()["tag_video"]["offline"], "test")


def track(shape="circle", colour="red", motion="left", size="none", event="none", event_time=0.0, new="",
          start=(0.7, 0.5), end=(0.3, 0.5), r0=0.12, r1=0.12) -> ShapeTrack:
    return ShapeTrack(shape, colour, motion, size, event, event_time, new, start, end, r0, r1)


def scene(*tracks: ShapeTrack, background="navy") -> Scene:
    return Scene(background, tuple(tracks), num_frames=30, fps=10)


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_has_no_fixed_point(n):
    for seed in range(20):
        perm = derangement(n, np.random.default_rng(seed))
        assert sorted(perm.tolist()) == list(range(n))
        assert (perm != np.arange(n)).all()


def test_shuffled_tags_stay_in_their_split_and_ignore_row_order():
    ids = [f"v{i}" for i in range(8)]
    tags = [[f"tag{i}"] for i in range(8)]
    groups = ["train"] * 5 + ["test"] * 3
    out = shuffled_tags(ids, tags, groups, seed=0, modality="visual")
    for i, (t, g) in enumerate(zip(out, groups)):
        assert t != tags[i]  # never its own
        donor = int(t[0][3:])
        assert groups[donor] == g  # from its own split
    assert sorted(map(tuple, out)) == sorted(map(tuple, tags))  # every list used exactly once
    # Same donors when the rows come in another order; other donors with another seed/modality.
    order = np.random.default_rng(1).permutation(8)
    again = shuffled_tags([ids[i] for i in order], [tags[i] for i in order], [groups[i] for i in order], 0, "visual")
    assert {ids[i]: again[k] for k, i in enumerate(order)} == dict(zip(ids, out))
    assert shuffled_tags(ids, tags, groups, 1, "visual") != out or shuffled_tags(ids, tags, groups, 0, "textual") != out


def test_scene_objects_speak_the_taggers_vocabulary():
    sc = scene(track("triangle", "purple", "up", "grows"),
               track("square", "yellow", "static", "none", "changes_colour", 0.5, "white", (0.2, 0.2), (0.2, 0.2)),
               background="brown")
    background, objects = scene_objects(asdict(sc), LEX, VCFG)
    assert background == "brown"
    # Both always visible: the larger one (a square of the same half-extent) comes first.
    assert objects[1].colours == ("purple",) and objects[1].shape == "triangle"
    assert objects[1].direction == "upward" and objects[1].size == "growth"
    assert objects[0].colours == ("yellow", "white") and objects[0].direction is None
    # An appearing shape is visible for less of the clip: listed after a shape that is always there.
    sc2 = scene(track(event="appears", event_time=0.4), track("square", "blue", "down", start=(0.2, 0.2), end=(0.2, 0.6)))
    _, objs = scene_objects(asdict(sc2), LEX, VCFG)
    assert [o.shape for o in objs] == ["square", "circle"] and objs[1].appears
    assert scene_objects(asdict(scene(track(), background="gray")), LEX, VCFG)[0] == "grey"
    assert scene_objects(asdict(scene(track(), background="navy")), LEX, VCFG)[0] == "blue"


def _vlm_frames(sc: Scene, n: int = 8) -> list[bytes]:
    frames = render_scene(sc, 96, 96)
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    out = []
    for f in frames[picks]:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def test_oracle_equals_the_pixel_tagger_on_a_clean_scene():
    # A scene the pixel tagger reads correctly: the oracle must then give the very same answer
    # (same concepts, same sampling, same seed): it is that tagger with perfect eyes.
    sc = scene(track("square", "red", "left", start=(0.75, 0.3), end=(0.3, 0.3)),
               track("circle", "green", "down", "grows", start=(0.3, 0.25), end=(0.3, 0.65), r0=0.09, r1=0.16))
    jpegs = _vlm_frames(sc)
    bg, objects = analyse_video(jpegs, LEX, VCFG)
    assert (bg, objects) == scene_objects(asdict(sc), LEX, VCFG)
    for t in (0.7, 1.0):
        seed = derive_seed(1234, "v", t)
        assert oracle_answer(asdict(sc), t, seed, LEX, VCFG) == tag_frames(jpegs, t, seed, LEX, VCFG)


def test_oracle_visual_tags_merge_temperatures_and_need_truth():
    sc = asdict(scene(track("circle", "red", "left")))
    truth = {"v0": {"scene": sc}}
    [tags] = oracle_visual_tags(["v0"], truth, LEX, VCFG, base_seed=1234)
    assert "red circle" in tags and "leftward motion" in tags and len(tags) == len(set(tags))
    assert "rightward motion" not in tags and "square" not in tags
    with pytest.raises(ValueError, match="no ground truth"):
        oracle_visual_tags(["nope"], truth, LEX, VCFG, base_seed=1234)


def test_controlled_tags_dispatch():
    vids, vsplit, vis = ["a", "b"], ["test", "test"], [["x"], ["y"]]
    caps, csplit, txt = ["c1", "c2", "c3"], ["test"] * 3, [["p"], ["q"], ["r"]]
    assert controlled_tags("real", vids, vsplit, vis, caps, csplit, txt, 0) == (vis, txt)
    v, t = controlled_tags("shuffled", vids, vsplit, vis, caps, csplit, txt, 0)
    assert v == [["y"], ["x"]] and all(a != b for a, b in zip(t, txt))
    v, t = controlled_tags("oracle", vids, vsplit, vis, caps, csplit, txt, 0, oracle=lambda ids: [[i] for i in ids])
    assert v == [["a"], ["b"]] and t == txt
    with pytest.raises(ValueError, match="needs the ground truth"):
        controlled_tags("oracle", vids, vsplit, vis, caps, csplit, txt, 0)
    with pytest.raises(ValueError, match="unknown tag control"):
        controlled_tags("bogus", vids, vsplit, vis, caps, csplit, txt, 0)  # type: ignore[arg-type]
