"""Auxiliary captions (paper Tab. 7, Appx. G): judging, offline generators, stages, cleaning, and
how the features stage turns them into the model's auxiliary sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.aux_captions.clean import clean_item, read_captions_table, sentence_key
from pipeline.aux_captions.config import CleanCaptionsConfig, OfflineCaptionerConfig, OfflineParaphraserConfig
from pipeline.aux_captions.judge import fix_articles, judge_sentences, split_sentences
from pipeline.aux_captions.offline_text import paraphrase_caption, synonym_groups
from pipeline.aux_captions.offline_video import APPEARS, DISAPPEARS, MOVES, SIZES, STILL, caption_video
from pipeline.config import ConfigError, from_mapping
from pipeline.features.config import AuxiliaryInputs, FeaturesConfig
from pipeline.tags.lexicon import load_lexicon
from pipeline.tags.offline_text import match_concepts, tokenize
from pipeline.tags.offline_visual import ObjectEvents
from pipeline.tags.raw import RawRow, read_raw, write_raw
from pipeline.tags.sentences import PREFIX, caption_draws, first_caption
from stages import caption_text, caption_video as caption_video_stage, clean_captions
from tests.aux_params import aux_params
from tests.tags_fake_server import (PROSE, REFUSAL, TABLE, FakeOpenAIServer, Reply, Status, draw_frames,
                                    request_text, write_captions_parquet, write_frames_parquet,
                                    write_videos_parquet)

RED, BLUE, GREEN = (220, 30, 30), (40, 80, 230), (40, 200, 60)
VIDEOS = {
    "v0": ((30, 30, 30), [dict(shape="square", colour=RED, x0=70, y0=48, x1=25, y1=48, r0=10, r1=10)]),
    "v1": ((240, 240, 240), [dict(shape="circle", colour=BLUE, x0=48, y0=20, x1=48, y1=75, r0=10, r1=10)]),
    "v2": ((128, 128, 128), [dict(shape="triangle", colour=GREEN, x0=48, y0=48, x1=48, y1=48, r0=12, r1=12)]),
}
SPLITS = {"v0": "train", "v1": "train", "v2": "test"}
CAPTIONS = {
    "v0#0": ("v0", "train", "a red square slides to the left"),
    "v0#1": ("v0", "train", "something happens quickly"),
    "v1#0": ("v1", "train", "a blue ball falls down on a white background"),
    "v2#0": ("v2", "test", "a green triangle stays still"),
}
LEX = load_lexicon("builtin")
CAPTIONER = OfflineCaptionerConfig(facts_per_caption=2, background_prob=0.4, second_object_prob=0.3)
CLEAN = CleanCaptionsConfig(min_words=2, max_words=30, drop_copies=True, max_captions=10)


def invoke(app, args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture()
def data(tmp_path):
    write_videos_parquet(tmp_path / "videos.parquet", SPLITS)
    write_captions_parquet(tmp_path / "captions.parquet", CAPTIONS)
    write_frames_parquet(tmp_path / "vlm_frames.parquet", {v: draw_frames(*spec) for v, spec in VIDEOS.items()})
    return tmp_path


def write_params(root, params) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_all(root, visual: bool = True, textual: bool = True):
    invoke(caption_video_stage.app, ["--params", root / "params.yaml", "--frames", root / "vlm_frames.parquet",
                                     "--cache", root / "cache.sqlite", "--out", root / "raw/visual.parquet"])
    invoke(caption_text.app, ["--params", root / "params.yaml", "--captions", root / "captions.parquet",
                              "--cache", root / "cache.sqlite", "--out", root / "raw/textual.parquet"])
    invoke(clean_captions.app, ["--params", root / "params.yaml", "--visual-raw", root / "raw/visual.parquet",
                                "--textual-raw", root / "raw/textual.parquet", "--captions",
                                root / "captions.parquet", "--videos", root / "videos.parquet",
                                "--out", root / "captions_aux.parquet", "--metrics", root / "aux.json"])
    return read_captions_table(root / "captions_aux.parquet")


# -- judging --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict, items", [
    ("- A red circle moves left.\n- A disc slides to the left, quickly.",
     "ok", ["A red circle moves left.", "A disc slides to the left, quickly."]),  # commas stay inside
    ("Here are 10 captions:\n1. A dog runs.\n2. \"A cat sleeps\"\nHope this helps!",
     "ok", ["A dog runs.", "A cat sleeps"]),
    ("a man in a vest and tie standing on a stage", "ok", ["a man in a vest and tie standing on a stage"]),
    ("A dog runs. It jumps.", "ok", ["A dog runs.", "It jumps."]),
    ("Caption 1: a red ball falls\nCaption 2: a ball drops down", "ok", ["a red ball falls", "a ball drops down"]),
    ('```json\n["a red box", "a blue disc rises"]\n```', "ok", ["a red box", "a blue disc rises"]),
    (PROSE + " It is sunny. Birds fly.", "unparseable", []),  # a paragraph, not a list
    (REFUSAL, "refusal", []),
    ("I'm sorry, I cannot watch videos.\n- ok", "refusal", []),
    (TABLE, "unparseable", []),
    ("#@!$ %^&* {}[] <> ~~", "unparseable", []),
    ("", "empty", []),
    (None, "null", []),
])
def test_sentence_judge(text, verdict, items):
    judgement = judge_sentences(text, "stop")
    assert judgement.verdict == verdict
    assert judgement.items == items


def test_an_answer_cut_by_max_tokens_is_re_asked_not_kept():
    assert judge_sentences("- a red circle moves left\n- a blue sq", "length").verdict == "length"


def test_bullets_are_never_split_on_commas():
    items, form = split_sentences("- on a blue background, a red disc rises, then it stops")
    assert form == "bullets" and items == ["on a blue background, a red disc rises, then it stops"]


def test_articles_follow_the_next_word():
    assert fix_articles("a orange disc and an blue box; A apple") == "an orange disc and a blue box; An apple"


# -- offline generators ---------------------------------------------------------------------------

MOVING = ObjectEvents(("red", "blue"), "circle", "leftward", "growth", appears=False, disappears=True)
RESTING = ObjectEvents(("green",), "square", None, None, appears=True, disappears=False)
ALL_VERBS = {v for group in (*MOVES.values(), STILL, *SIZES.values(), APPEARS, DISAPPEARS) for v in group}


def _lines(answer: str) -> list[str]:
    return [line[2:] for line in answer.splitlines()]


def test_offline_captions_state_only_what_the_analysis_found():
    answer = caption_video("white", [MOVING], False, 10, 0.9, 5, CAPTIONER)
    lines = _lines(answer)
    assert len(lines) == len(set(lines)) == 10 and judge_sentences(answer, "stop").ok
    allowed = set(MOVES["leftward"]) | set(SIZES["growth"]) | set(DISAPPEARS) | {"turns blue", "changes colour to blue"}
    for line in lines:
        stated = {v for v in ALL_VERBS | {"turns blue", "changes colour to blue"} if v in line}
        assert stated and stated <= allowed, line  # never "stays still", "shrinks", "appears", ...
        assert "circle" in line or "red" in line  # the object is named by its shape or colour


def test_a_still_frame_caption_names_objects_but_no_motion():
    lines = _lines(caption_video("white", [MOVING, RESTING], True, 10, 1.0, 3, CAPTIONER))
    assert lines and not any(v in line for line in lines for v in ALL_VERBS)
    assert any("square" in line for line in lines) and any("circle" in line for line in lines)


def test_offline_captioner_is_seeded():
    a = caption_video("white", [MOVING, RESTING], False, 10, 0.8, 11, CAPTIONER)
    assert a == caption_video("white", [MOVING, RESTING], False, 10, 0.8, 11, CAPTIONER)
    assert a != caption_video("white", [MOVING, RESTING], False, 10, 0.8, 12, CAPTIONER)
    # Low temperature: the plainest wording of the most salient object and fact first.
    assert _lines(caption_video("white", [MOVING], False, 3, 0.0, 1, CAPTIONER))[0] == "a red circle moves to the left"


def test_the_offline_captioner_depends_on_the_pixel_analysis_not_on_tag_sampling(data):
    """Tab. 6 varies the offline tagger's sampling: the captions (and their cache fingerprint) stay;
    a knob of the analysis itself changes them. The stage declares exactly the analysis knobs."""
    from dataclasses import fields

    from pipeline.tags.offline_visual import ANALYSIS_PARAMS, TAGGING_ONLY, OfflineVisualConfig

    def raw(edit) -> pd.DataFrame:
        params = aux_params(textual="tags")
        edit(params["tag_video"]["offline"])
        write_params(data, params)
        out = data / "raw/visual.parquet"
        invoke(caption_video_stage.app, ["--params", data / "params.yaml", "--frames", data / "vlm_frames.parquet",
                                         "--cache", data / "cache.sqlite", "--out", out])
        return pd.read_parquet(out)

    base = raw(lambda o: None)
    assert base["verdict"].eq("ok").all(), base[["item_id", "verdict"]]
    weaker = raw(lambda o: o["sampling"].update(filler_prob=1.0, order_noise=2.0) or o.update(mention_bonus=0.9))
    pd.testing.assert_frame_equal(base, weaker)
    stricter = raw(lambda o: o.update(min_blob_area=0.2))  # no blob is that large: nothing to caption
    assert not base["prompt_hash"].equals(stricter["prompt_hash"]) and not base["response"].equals(stricter["response"])
    assert set(TAGGING_ONLY) <= {f.name for f in fields(OfflineVisualConfig)}
    assert set(ANALYSIS_PARAMS) == {f"tag_video.offline.{f.name}" for f in fields(OfflineVisualConfig)} - {
        f"tag_video.offline.{k}" for k in TAGGING_ONLY}
    assert set(ANALYSIS_PARAMS) <= set(caption_video_stage.PARAMS)


def _concepts(text: str) -> list[str]:
    return sorted(match_concepts(tokenize(text), LEX)[0])


@pytest.mark.parametrize("caption", ["a red square slides to the left while a blue ball grows",
                                     "something purple rises on a navy background",
                                     "a green triangle stays still and then vanishes"])
def test_paraphrases_keep_every_concept_and_differ_from_the_caption(caption):
    lines = _lines(paraphrase_caption(caption, 10, 1.0, 7, LEX, OfflineParaphraserConfig(swap_prob=0.6)))
    assert lines and len(lines) == len(set(lines))
    for line in lines:
        assert line.lower() != caption.lower()
        assert _concepts(line) == _concepts(caption), line  # the same facts, other words
        assert len(line.split()) == len(caption.split())


def test_synonyms_keep_the_inflection_and_skip_structure_words():
    groups = synonym_groups(LEX)
    assert "glides" in groups["slides"] and "gliding" not in groups["slides"]
    assert "west" in groups["left"] and "leftward" not in groups["left"]
    assert "two" not in groups and "then" not in groups and "quickly" not in groups


def test_a_caption_with_nothing_to_swap_gets_no_paraphrase():
    assert paraphrase_caption("something happens", 10, 1.0, 1, LEX, OfflineParaphraserConfig(0.5)) == ""


# -- cleaning -------------------------------------------------------------------------------------

def test_clean_item_rules_in_order():
    from collections import Counter

    dropped: Counter = Counter()
    raw = ["A red disc rises.", "a red disc rises", "A RED DISC, rises!", "dog", "A red square slides left.",
           "word " * 40, "a red square slides left", "#### {} <>", "a blue box falls"]
    kept = clean_item(raw, CLEAN, "A red square slides left", dropped)
    assert kept == ["A red disc rises", "a blue box falls"]
    assert dropped == Counter({"duplicate": 2, "copy": 2, "too_short": 1, "too_long": 1, "implausible": 1})
    assert clean_item(raw, CleanCaptionsConfig(2, 30, False, 1), None, Counter()) == ["A red disc rises"]
    assert sentence_key("A red, disc!") == sentence_key("a red disc")


def test_stages_write_each_modality_only_when_the_model_reads_it(data):
    write_params(data, aux_params(visual="captions", textual="tags"))
    table = run_all(data)
    assert list(table.visual) == ["v0", "v1", "v2"] and table.textual == {}
    assert len(read_raw(data / "raw/textual.parquet")) == 0  # a placeholder: no paraphraser ran
    for video, captions in table.visual.items():
        assert 1 <= len(captions) <= 10 and all(judge_sentences(c, "stop").ok for c in captions)
    assert any("left" in c for c in table.visual["v0"]) and any("down" in c or "falls" in c or "sinks" in c
                                                                 for c in table.visual["v1"])
    metrics = yaml.safe_load((data / "aux.json").read_text())
    assert metrics["auxiliary"] == {"visual": "captions", "textual": "tags"} and "textual" not in metrics
    assert metrics["visual"]["items"] == 3 and metrics["visual"]["without_captions"] == 0


def test_paraphrase_stage_and_metrics_count_what_was_dropped(data):
    write_params(data, aux_params(visual="tags", textual="captions"))
    table = run_all(data)
    assert table.visual == {}
    assert set(table.textual) == {"v0#0", "v1#0", "v2#0"}  # "something happens quickly": nothing to swap
    metrics = yaml.safe_load((data / "aux.json").read_text())["textual"]
    assert metrics["items"] == 4 and metrics["answered"] == 3 and metrics["failed"] == {"empty": 1}
    assert metrics["without_captions"] == 1
    assert metrics["mean_captions"] == pytest.approx(np.mean([len(v) for v in table.textual.values()]), abs=1e-3)


def test_middle_frame_captions_come_from_one_still_frame(data):
    params = aux_params(visual="captions", textual="tags")
    params["caption_video"]["input"] = "middle_frame"
    write_params(data, params)
    table = run_all(data)
    for captions in table.visual.values():
        assert not any(v in c for c in captions for v in ALL_VERBS)
    assert any("square" in c for c in table.visual["v0"])


def test_clean_refuses_items_the_prepared_data_does_not_know(data):
    write_params(data, aux_params(visual="captions", textual="tags"))
    write_raw([RawRow("ghost", 0.7, 1, 0, "m", "r", "h", "- a red box", "stop", "ok", "", ["a red box"])],
              data / "raw/visual.parquet")
    write_raw([], data / "raw/textual.parquet")
    result = invoke(clean_captions.app, ["--params", data / "params.yaml", "--visual-raw", data / "raw/visual.parquet",
                                         "--textual-raw", data / "raw/textual.parquet", "--captions",
                                         data / "captions.parquet", "--videos", data / "videos.parquet",
                                         "--out", data / "c.parquet", "--metrics", data / "m.json"], code=1)
    assert "ghost" in result.output and "Traceback" not in result.output


# -- the openai path: same client, cache and re-asks as the tags ----------------------------------

def test_paraphrases_from_a_server_re_ask_bad_answers_and_resume_from_the_cache(data):
    calls: dict[str, int] = {}

    def responder(body, n):
        caption = request_text(body).split("1) ")[-1].split("\n")[0]
        calls[caption] = calls.get(caption, 0) + 1
        if caption.startswith("a red square") and calls[caption] == 1:
            return Reply(REFUSAL)
        if caption.startswith("a blue ball") and calls[caption] == 1:
            return Reply(PROSE + " It rains. Birds fly.")
        if caption.startswith("something") and calls[caption] == 1:
            return Status(500)  # retried by the client, not an answer
        return Reply("Here are 10 paraphrases:\n" + "\n".join(f"- {caption} version {k}" for k in range(10)))

    with FakeOpenAIServer(responder) as server:
        params = aux_params(server.base_url, visual="tags", textual="captions")
        params["caption_text"]["backend"] = "openai"
        write_params(data, params)
        table = run_all(data)
        assert sorted(table.textual) == sorted(CAPTIONS)
        assert all(len(v) == 10 for v in table.textual.values())
        raw = read_raw(data / "raw/textual.parquet").set_index("item_id")
        assert raw.loc["v0#0", "attempt"] == 1 and raw.loc["v1#0", "attempt"] == 1  # re-asked with a new seed
        assert raw.loc["v0#1", "attempt"] == 0 and raw.loc["v2#0", "attempt"] == 0
        bodies = [r.body for r in server.posts()]
        assert all("paraphrased version" in request_text(b) for b in bodies)
        asked = len(server.posts())
        run_all(data)  # every item is cached ok: nothing is asked again
        assert len(server.posts()) == asked


def test_visual_captions_from_a_server_send_the_clip_or_one_middle_frame(data):
    with FakeOpenAIServer(lambda body, n: Reply("- a shape moves across the screen\n- a coloured shape")) as server:
        params = aux_params(server.base_url, visual="captions", textual="tags")
        params["caption_video"]["backend"] = "openai"
        write_params(data, params)
        run_all(data)
        parts = [p for r in server.posts() for p in r.body["messages"][-1]["content"]]
        assert sum(p["type"] == "video_url" for p in parts) == 3
        assert any("Generate 10 new captions" in p.get("text", "") for p in parts)
        params["caption_video"]["input"] = "middle_frame"
        params["caption_video"]["prompt"] = "caption_frame"
        write_params(data, params)
        before = len(server.posts())
        run_all(data)
        new = server.posts()[before:]
        assert len(new) == 3
        for r in new:
            media = [p for p in r.body["messages"][-1]["content"] if p["type"] != "text"]
            assert [p["type"] for p in media] == ["image_url"]  # one frame, as an image


def test_a_server_that_never_gives_a_usable_answer_fails_the_stage_in_one_line(data):
    with FakeOpenAIServer(lambda body, n: Reply(REFUSAL)) as server:
        params = aux_params(server.base_url, visual="tags", textual="captions")
        params["caption_text"]["backend"] = "openai"
        write_params(data, params)
        result = invoke(caption_text.app, ["--params", data / "params.yaml", "--captions", data / "captions.parquet",
                                           "--cache", data / "cache.sqlite", "--out", data / "raw/textual.parquet"],
                        code=1)
        assert "refusal" in result.output and "Traceback" not in result.output
        assert not (data / "raw/textual.parquet").exists()


# -- into the model -------------------------------------------------------------------------------

def test_caption_draws_use_every_caption_before_repeating():
    caps = [f"caption {i}" for i in range(10)]
    draws = caption_draws(caps, 8, 0, "visual", "v0")
    assert len(set(draws)) == 8 and set(draws) <= set(caps)
    assert draws == caption_draws(caps, 8, 0, "visual", "v0") != caption_draws(caps, 8, 1, "visual", "v0")
    three = caption_draws(caps[:3], 7, 0, "textual", "c")
    assert sorted(three[:3]) == sorted(caps[:3]) and sorted(three[3:6]) == sorted(caps[:3])
    assert caption_draws([], 4, 0, "visual", "v") == [PREFIX] * 4
    assert first_caption(caps) == "caption 0" and first_caption([]) == PREFIX


def test_features_read_captions_for_the_switched_modality_only():
    from pipeline.features.extract import text_indices
    from pipeline.features.inputs import FeatureInputs

    videos = pd.DataFrame({"video_id": ["v0", "v1"], "row": [0, 1], "split": ["train", "test"], "frame_row": [0, 1]})
    captions = pd.DataFrame({"caption_id": ["c0", "c1"], "video_id": ["v0", "v1"], "row": [0, 1],
                             "split": ["train", "test"], "caption_index": [0, 0], "text": ["x y", "z w"]})
    visual = [[f"v0 caption {i}" for i in range(5)], ["v1 caption"]]
    textual = [["tag a", "tag b", "tag c"], ["tag d"]]
    inputs = FeatureInputs(videos, captions, visual, textual, {})
    cfg = FeaturesConfig(encode=True, batch_size=4, device="cpu", torch_threads=1, train_tag_draws=4,
                         train_tags_per_draw=2, infer_tags=2, seed=0, tag_control="real",
                         auxiliary=AuxiliaryInputs(visual="captions", textual="tags"))
    table, idx = text_indices(inputs, cfg)
    texts = np.asarray(table.texts, dtype=object)
    assert list(texts[idx["tags_visual_infer"]]) == ["v0 caption 0", "v1 caption"]  # the first caption, as is
    train = texts[idx["tags_visual_train"]]
    assert len(set(train[0])) == 4 and set(train[0]) <= set(visual[0]) and set(train[1]) == {"v1 caption"}
    assert list(texts[idx["tags_textual_infer"]]) == ["a video of tag a, tag b", "a video of tag d"]


def test_auxiliary_switch_is_validated():
    with pytest.raises(ConfigError, match="auxiliary"):
        from_mapping(AuxiliaryInputs, {"visual": "captions", "textual": "summaries"}, "features.auxiliary")
    with pytest.raises(ValueError, match="oracle"):
        FeaturesConfig(encode=True, batch_size=4, device="cpu", torch_threads=1, train_tag_draws=4,
                       train_tags_per_draw=2, infer_tags=2, seed=0, tag_control="oracle",
                       auxiliary=AuxiliaryInputs(visual="captions", textual="tags"))


def test_finetune_with_auxiliary_captions_is_refused_up_front(tmp_path):
    from pipeline.params import check_file

    params = yaml.safe_load(open("params.yaml"))
    params["features"]["auxiliary"] = {"visual": "captions", "textual": "tags"}
    params["train"]["mode"] = "finetune"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    _, problems = check_file(tmp_path / "p.yaml")
    assert any("auxiliary captions need train.mode: cached" in p for p in problems)
