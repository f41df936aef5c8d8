"""Oracle visual tags: what the offline pixel tagger would answer if it read a synthetic scene
perfectly (the generator's true facts, in the tagger's own vocabulary, answer format, temperature
sampling and seeds). Used by the features stage's ``tag_control: oracle`` (a labelled control,
never a default: taggers never see the ground truth) and by the tiny backbone's fresh pretraining
clips (experiments/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.tags.blobs import colour_names
from pipeline.tags.clean import merge_ordered, normalise
from pipeline.tags.lexicon import Lexicon, load_stopwords
from pipeline.tags.offline_visual import ObjectEvents, OfflineVisualConfig, video_concepts
from pipeline.tags.parse import parse_response
from pipeline.tags.sampling import bullet_list, sample_tags
from pipeline.tags.seeds import derive_seed

DEFAULT_TEMPERATURES = (0.7, 0.8, 0.9, 1.0)  # the tag_video@t07..t10 instances

# The generator's RGB values live in pipeline.data.synth_scene; imported lazily so that the
# tags package does not depend on the synthetic generator unless the oracle is used.
_DIRECTION = {"left": "leftward", "right": "rightward", "up": "upward", "down": "downward", "static": None}
_SIZE = {"grows": "growth", "shrinks": "shrinking", "none": None}
# Area over squared half-extent of each rendered shape (synth_render: a triangle's circumradius is
# 1.3 half-extents), to order shapes by their largest area as the tagger breaks ties.
_AREA = {"square": 4.0, "circle": float(np.pi), "triangle": 3 * np.sqrt(3) / 4 * 1.3 ** 2}



def _tagger_colour(name: str, table: Mapping[str, tuple[int, int, int]], lexicon: Lexicon,
                   cfg: OfflineVisualConfig) -> str:
    """The colour name the pixel tagger gives a perfectly rendered pixel of colour ``name``."""
    rgb = np.asarray(table[name], dtype=np.float64)[None]
    return str(colour_names(rgb, lexicon.hues, cfg.min_saturation)[0])


def scene_objects(scene: Mapping[str, Any], lexicon: Lexicon,
                  cfg: OfflineVisualConfig) -> tuple[str, list[ObjectEvents]]:
    """(background colour, per-shape events) of a scene, in the tagger's vocabulary.

    Shapes are listed longest-visible first, then largest first, as the tagger orders its tracks.
    """
    from pipeline.data.synth_scene import BACKGROUNDS, COLOURS

    objects = []
    for s in scene["shapes"]:
        event = str(s["event"])
        colours = (_tagger_colour(s["colour"], COLOURS, lexicon, cfg),)
        if event == "changes_colour":
            new = _tagger_colour(s["new_colour"], COLOURS, lexicon, cfg)
            colours = colours + ((new,) if new != colours[0] else ())
        visible = {"appears": 1.0 - float(s["event_time"]), "disappears": float(s["event_time"])}.get(event, 1.0)
        area = _AREA[str(s["shape"])] * max(float(s["size_start"]), float(s["size_end"])) ** 2
        objects.append(((visible, area), ObjectEvents(colours, str(s["shape"]), _DIRECTION[str(s["motion"])],
                                              _SIZE[str(s["size_change"])], appears=event == "appears",
                                              disappears=event == "disappears")))
    order = sorted(range(len(objects)), key=lambda i: (-objects[i][0][0], -objects[i][0][1]))
    background = _tagger_colour(str(scene["background"]), BACKGROUNDS, lexicon, cfg)
    return background, [objects[i][1] for i in order]


def oracle_answer(scene: Mapping[str, Any], temperature: float, seed: int, lexicon: Lexicon,
                  cfg: OfflineVisualConfig) -> str:
    """The bullet-list answer the offline visual tagger would give if it read ``scene`` perfectly."""
    background, objects = scene_objects(scene, lexicon, cfg)
    concepts = video_concepts(background, objects, lexicon, cfg)
    rng = np.random.default_rng(seed)
    return bullet_list(sample_tags(concepts, lexicon.fillers, temperature, rng, cfg.sampling))


def default_clean(items: Sequence[str]) -> list[str]:
    """Normalise (lowercase, punctuation, stopwords) and de-duplicate, as clean_tags does.

    The POS (noun+verb) rule is left out: it drops none of the lexicon's phrases. Pass
    ``TagCleaner.clean`` to :func:`oracle_visual_tags` to apply the full rules.
    """
    stopwords = load_stopwords("builtin")
    return list(dict.fromkeys(t for t in (normalise(i, stopwords) for i in items) if t))


def scene_visual_tags(scene: Mapping[str, Any], temperature: float, seed: int, lexicon: Lexicon,
                      cfg: OfflineVisualConfig,
                      clean: Callable[[Sequence[str]], list[str]] = default_clean) -> list[str]:
    """One cleaned oracle answer for ``scene`` (e.g. a fresh pretraining clip's tags)."""
    return clean(parse_response(oracle_answer(scene, temperature, seed, lexicon, cfg)).items)


def oracle_visual_tags(video_ids: Sequence[str], truth: Mapping[str, Any], lexicon: Lexicon,
                       cfg: OfflineVisualConfig, base_seed: int,
                       temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                       clean: Callable[[Sequence[str]], list[str]] = default_clean) -> list[list[str]]:
    """Oracle visual tag lists of ``video_ids``: one answer per temperature (seeded exactly as
    ``tag_video`` seeds its requests), cleaned, then merged in temperature order as clean_tags does."""
    out = []
    for vid in video_ids:
        if vid not in truth:
            raise ValueError(f"video {vid!r} has no ground truth (oracle tags need synthetic_truth.json)")
        scene = truth[vid]["scene"]
        out.append(merge_ordered(scene_visual_tags(scene, t, derive_seed(base_seed, vid, t), lexicon, cfg, clean)
                                 for t in sorted(temperatures)))
    return out
