"""The content-addressed answer cache and the 'ask only for what is missing' contract."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.config import from_mapping
from pipeline.tags.cache import Answer, AnswerCache, CacheError, Entry, request_key
from pipeline.tags.generate import generate_answers
from pipeline.tags.inputs import Caption
from pipeline.tags.prompts import load_prompt
from pipeline.tags.seeds import derive_seed, temperature_key
from pipeline.tags.tag_text import TagTextConfig, text_requests
from tests.tags_fake_server import FakeOpenAIServer, Status, default_params


def text_cfg(base_url: str, **openai) -> TagTextConfig:
    raw = default_params()["tag_text"]
    raw = {**raw, "backend": "openai", "openai": {**raw["openai"], "base_urls": [base_url], **openai}}
    return from_mapping(TagTextConfig, raw, "test")


BODY = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.7,
        "top_p": 0.9, "seed": 1, "max_tokens": 64}


def test_key_is_canonical_and_sensitive_to_every_field():
    base = request_key("rev", "/chat/completions", BODY)
    assert base == request_key("rev", "/chat/completions", dict(reversed(list(BODY.items()))))
    variants = [request_key("rev2", "/chat/completions", BODY),
                request_key("rev", "/completions", BODY)]
    for field, value in [("model", "m2"), ("temperature", 0.8), ("top_p", 0.95), ("seed", 2),
                         ("max_tokens", 65), ("messages", [{"role": "user", "content": "y"}]),
                         ("structured_outputs", {"regex": "a"})]:
        variants.append(request_key("rev", "/chat/completions", {**BODY, field: value}))
    assert len({base, *variants}) == len(variants) + 1


def test_answers_persist_across_reopen_in_wal_mode(tmp_path):
    path = tmp_path / "cache.sqlite"
    with AnswerCache(path) as cache:
        cache.put("k1", Answer("- a\n- b", "stop", "m", 0.5), "ok")
        cache.put("k2", Answer("", "length", "m", 1.5), "empty")
        cache.put("k3", Answer(None, "stop", "m", 0.1), "null")
        assert len(cache) == 3
        # Committed per answer: another connection sees both while this one is still open.
        other = sqlite3.connect(path)
        assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()
    with AnswerCache(path) as cache:
        assert cache.get("k1") == Entry(Answer("- a\n- b", "stop", "m", 0.5), "ok")
        assert cache.get("k2") == Entry(Answer("", "length", "m", 1.5), "empty")
        assert cache.get("k3") == Entry(Answer(None, "stop", "m", 0.1), "null")  # null is not ""
        assert cache.get("nope") is None


def test_corrupt_cache_file_names_itself(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="cache.sqlite: cannot open the tag answer cache"):
        AnswerCache(path)


def test_seeds_are_stable_and_distinct():
    assert derive_seed(1, "a", 0.7) == derive_seed(1, "a", 0.7)
    seeds = {derive_seed(b, i, t) for b in (1, 2) for i in ("a", "b") for t in (0.7, 0.8, 0.9, 1.0)}
    assert len(seeds) == 16 and all(0 <= s < 2**31 for s in seeds)
    assert [temperature_key(t) for t in (0.7, 0.8, 0.9, 1.0)] == ["t07", "t08", "t09", "t10"]
    with pytest.raises(ValueError):
        temperature_key(0.75)


def test_rerun_asks_only_for_missing_answers(tmp_path):
    captions = [Caption(f"c{i}", f"caption {i}") for i in range(10)]
    cache = tmp_path / "cache.sqlite"
    with FakeOpenAIServer() as server:
        cfg = text_cfg(server.base_url)
        prompt = load_prompt(cfg.prompt)
        first = generate_answers(text_requests(captions[:6], cfg, prompt, 0.7), cfg.openai, cache,
                                 6, "", "t")
        assert len(server.posts()) == 6 and not any(a.cached for a in first)
        second = generate_answers(text_requests(captions, cfg, prompt, 0.7), cfg.openai, cache,
                                  10, "", "t")
        assert len(server.posts()) == 10  # only the 4 new captions were asked
        assert [a.cached for a in second] == [True] * 6 + [False] * 4
        assert [a.answer for a in second[:6]] == [a.answer for a in first]
        assert all(a.ok and a.attempt == 0 for a in second)
        # A different temperature is a different request (new seed, new key).
        generate_answers(text_requests(captions[:2], cfg, prompt, 0.8), cfg.openai, cache, 2, "", "t")
        assert len(server.posts()) == 12
    # Everything cached: no server needed at all (it is gone now).
    third = generate_answers(text_requests(captions, cfg, prompt, 0.7), cfg.openai, cache, 10, "", "t")
    assert all(a.cached for a in third) and [a.answer for a in third] == [a.answer for a in second]


def test_a_failed_request_does_not_stop_the_others(tmp_path):
    captions = [Caption(f"c{i}", f"caption {i}") for i in range(5)]
    def responder(body, n):
        return Status(400) if "caption 3" in body["messages"][-1]["content"] else None
    cache = tmp_path / "cache.sqlite"
    with FakeOpenAIServer(responder) as server:
        cfg = text_cfg(server.base_url, concurrency=1)
        answers = generate_answers(text_requests(captions, cfg, load_prompt(cfg.prompt), 0.7),
                                   cfg.openai, cache, 5, "", "t")
    assert [a.verdict for a in answers] == ["ok", "ok", "ok", "http_4xx", "ok"]
    assert "HTTP 400" in answers[3].detail and answers[3].answer is None and answers[3].items == []
    assert len(server.posts()) == 5  # a 4xx is not retried, nor re-asked with another seed
    with AnswerCache(cache) as c:
        assert len(c) == 4  # every answer committed; the refused request left nothing
