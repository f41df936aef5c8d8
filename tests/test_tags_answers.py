"""Judging answers: which LLM outputs are tag lists, which are failed attempts, and the cap."""

from __future__ import annotations

import pytest

from pipeline.tags.parse import Judgement, cap_candidates, judge_answer, plausible_tag
from pipeline.tags.seeds import attempt_seed, derive_seed
from tests.tags_fake_server import GARBAGE, PROSE, REFUSAL, TABLE, long_list
from tests.test_tags_clean import LLAMA_STYLE

OK = [
    LLAMA_STYLE,  # "Here are the top 10 general tags ...:\n\n1. **Competition**..." + sign-off
    "- motion\n- growth\n- colour change",
    "1. motion 2. growth 3. colour",
    '["motion", "growth", "Red Square"]',
    '```json\n{"tags": ["dance", "performance"]}\n```',
    "The general tags are: motion, growth, colour change.",
    "motion, growth, colour change, speed, direction, size, shape, teamwork, joy, energy.",
    "Tags:\nmotion\ngrowth",
    "Physical activity\nOutdoor recreation\nSportsmanship\nTeamwork",
    "Sure! Here you go:\n\n* Competition\n* Teamwork\n\nHope this helps!",
    "I'm sorry, I can't see the video itself. Based on the frames, general tags:\n"
    "- motion\n- ball\n- play\n- fun",  # an apology, then a real list: kept
]

BAD = [
    (None, "null"),
    ("", "empty"),
    (" \n\t", "empty"),
    (REFUSAL, "refusal"),
    ("I can't help with that.", "refusal"),
    ("As an AI language model, I do not have the ability to watch videos.", "refusal"),
    ("I cannot provide tags because:\n- the video is not visible\n- the request is unclear", "refusal"),
    (PROSE, "unparseable"),
    ("A man rides a horse, the sun sets over the sea, the waves crash on the rocks.", "unparseable"),
    (TABLE, "unparseable"),
    ("Tags:\n| motion | growth |\n| speed | joy |", "unparseable"),
    (GARBAGE, "unparseable"),
    ("Zm9vYmFyYmF6cXV4aGVsbG8gd29ybGQgdGhpcyBpcyBub2lzZQ==", "unparseable"),
    ("the the the the the the the the the the the the", "unparseable"),
    ('{"error": "internal"}', "unparseable"),
    ("...", "unparseable"),
    ("- \n* **", "unparseable"),
]


@pytest.mark.parametrize("text", OK)
def test_tag_lists_are_ok(text):
    judgement = judge_answer(text, "stop")
    assert judgement.verdict == "ok" and judgement.items


@pytest.mark.parametrize("text, verdict", BAD)
def test_answers_that_are_no_tag_list_fail_with_their_reason(text, verdict):
    assert judge_answer(text, "stop") == Judgement(verdict, [])


def test_an_answer_cut_by_max_tokens_is_a_failed_attempt():
    assert judge_answer("- motion\n- growth\n- sli", "length").verdict == "length"
    assert judge_answer(None, "length").verdict == "null"  # no content: that is the cause


def test_table_words_and_refusals_never_become_tags():
    for text, _ in BAD:
        assert judge_answer(text, "stop").items == []
    assert "sorry" in TABLE and "score" in TABLE


@pytest.mark.parametrize("item, ok", [("motion", True), ("the art of fine dining", True),
                                      ("3d animation", True), ("rock & roll", True),
                                      ("a man is riding a brown horse", False), ("12345", False),
                                      ("<|eot_id|>", False), ("{\"error\"", False), ("x" * 30, False)])
def test_plausible_tag(item, ok):
    assert plausible_tag(item) is ok


def test_over_long_answers_are_capped():
    judgement = judge_answer(long_list(14866), "stop")
    assert judgement.ok and len(judgement.items) == 14866
    verdict, kept = cap_candidates(judgement, 30)
    assert verdict == "too_long" and kept == [f"concept {i}" for i in range(30)]
    assert cap_candidates(judge_answer(long_list(30), "stop"), 30)[0] == "ok"
    assert cap_candidates(judgement, None) == ("ok", judgement.items)
    with pytest.raises(ValueError, match="only an ok answer"):
        cap_candidates(Judgement("empty", []), 30)


def test_attempt_seeds_are_new_requests_but_reproducible():
    seed = derive_seed(1234, "c1", 0.7)
    assert attempt_seed(seed, 0) == seed  # attempt 0: the request (and cache key) as before
    seeds = [attempt_seed(seed, k) for k in range(5)]
    assert len(set(seeds)) == 5 and seeds == [attempt_seed(seed, k) for k in range(5)]
    assert all(0 <= s < 2**31 for s in seeds)
    with pytest.raises(ValueError):
        attempt_seed(seed, -1)
