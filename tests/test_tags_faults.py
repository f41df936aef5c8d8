"""The tag stages against a loopback server that injects faults (issue 10's 'done when' list).

Bad answers (empty, null, refusal, prose, table, garbage, cut, over-long), a trickling body, a
dead replica, a replica failing everything, a server capping requests in flight, a 4xx on one
item; plus byte-identical outputs and what the progress bar and the log show.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import from_mapping
from pipeline.tags import generate as generate_module
from pipeline.tags.build import build_tags
from pipeline.tags.cache import AnswerCache, request_key
from pipeline.tags.clean import CleanConfig
from pipeline.tags.client import ServerUnreachable
from pipeline.tags.generate import generate_answers
from pipeline.tags.inputs import Caption
from pipeline.tags.progress import TagProgress
from pipeline.tags.prompts import load_prompt
from pipeline.tags.raw import read_raw
from pipeline.tags.seeds import attempt_seed, derive_seed
from pipeline.tags.tag_text import TagTextConfig, tag_text, text_requests
from stages import tag_text as tag_text_stage
from tests.tags_fake_server import (GARBAGE, PROSE, REFUSAL, TABLE, FakeOpenAIServer, Reply, Status,
                                    Trickle, dead_url, default_params, long_list, write_captions_parquet,
                                    write_videos_parquet)

FAULTS = {  # item -> an answer that is no tag list, and the verdict it must get
    "c01": (Reply(""), "empty"),
    "c02": (Reply(None), "null"),
    "c03": (Reply(REFUSAL), "refusal"),
    "c04": (Reply(PROSE), "unparseable"),
    "c05": (Reply(TABLE), "unparseable"),
    "c06": (Reply(GARBAGE), "unparseable"),
    "c07": (Reply("- motion\n- growth\n- sli", "length"), "length"),
}


def item_of(body: dict) -> str:
    """c07 <- '... 1) item 07 moves\n...'."""
    return "c" + body["messages"][-1]["content"].split("1) item ", 1)[1][:2]


def good(body: dict) -> Reply:
    return Reply(f"Here are the tags:\n1. tag of {item_of(body)}\n2. seed {body['seed']}\n3. motion")


def write_captions(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "captions.parquet"
    write_captions_parquet(path, {f"c{i:02d}": (f"v{i}", "train", f"item {i:02d} moves") for i in range(n)})
    write_videos_parquet(tmp_path / "videos.parquet", {f"v{i}": "train" for i in range(n)})
    return path


def params_for(base_urls: list[str], **openai) -> dict:
    params = default_params()
    params["tag_text"]["backend"] = "openai"
    params["tag_text"]["openai"].update({"base_urls": list(base_urls), **openai})
    return params


def text_cfg(base_urls: list[str], **openai) -> TagTextConfig:
    return from_mapping(TagTextConfig, params_for(base_urls, **openai)["tag_text"], "test.tag_text")


def run_stage(tmp_path: Path, params: dict, captions: Path, out: Path, cache: Path | None = None):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    args = ["--params", path, "--captions", captions, "--temperature", "0.7",
            "--cache", cache or tmp_path / "cache.sqlite", "--out", out]
    result = CliRunner().invoke(tag_text_stage.app, [str(a) for a in args])
    assert result.exit_code == 0 or isinstance(result.exception, SystemExit), result.exception  # no crash
    return result


def clean(tmp_path: Path, raw: Path) -> tuple[pd.DataFrame, dict]:
    cfg = from_mapping(CleanConfig, default_params()["clean_tags"], "clean_tags")
    tags = build_tags(cfg, [raw], [], tmp_path / "captions.parquet", tmp_path / "videos.parquet",
                      tmp_path / "tags.parquet", tmp_path / "tags.json")
    return tags, json.loads((tmp_path / "tags.json").read_text())


class RecordingProgress(TagProgress):
    """Keeps every postfix the bar showed."""

    shown: list[str] = []

    def show(self, client) -> None:
        RecordingProgress.shown.append(self.postfix(client))
        super().show(client)


@pytest.fixture
def progress(monkeypatch):
    RecordingProgress.shown = []
    monkeypatch.setattr(generate_module, "TagProgress", RecordingProgress)
    monkeypatch.setattr(generate_module, "REFRESH_S", 0.02)
    return RecordingProgress.shown


# -- bad answers -------------------------------------------------------------------------------

def test_bad_answers_are_reasked_with_a_derived_seed(tmp_path):
    captions = write_captions(tmp_path, 10)
    def responder(body, n):
        item = item_of(body)
        first = body["seed"] == derive_seed(1234, item, 0.7)
        return FAULTS[item][0] if item in FAULTS and first else good(body)
    cache = tmp_path / "cache.sqlite"
    with FakeOpenAIServer(responder) as server:
        rows = tag_text(text_cfg([server.base_url], concurrency=4), captions, 0.7, cache, tmp_path / "a.parquet")
        assert len(server.posts()) == 10 + len(FAULTS)  # each bad answer re-asked once
        asked = {(item_of(p.body), p.body["seed"]) for p in server.posts()}
    for row in rows:
        base = derive_seed(1234, row.item_id, 0.7)
        expected_attempt = 1 if row.item_id in FAULTS else 0
        assert (row.verdict, row.attempt) == ("ok", expected_attempt)
        assert row.seed == attempt_seed(base, expected_attempt) and (row.item_id, row.seed) in asked
        assert row.candidates == [f"tag of {row.item_id}", f"seed {row.seed}", "motion"]
    # The cache keeps what the server said, with its verdict (for debugging; never used as tags).
    cfg = text_cfg(["http://unused/v1"])
    requests = list(text_requests([Caption(f"c{i:02d}", f"item {i:02d} moves") for i in range(10)],
                                  cfg, load_prompt(cfg.prompt), 0.7))
    with AnswerCache(cache) as c:
        for request in requests:
            if request.item_id in FAULTS:
                entry = c.get(request_key("main", request.path, request.body))
                reply, verdict = FAULTS[request.item_id]
                assert entry.verdict == verdict and entry.answer.response == reply.text
    # Rerun with no server at all: successes come from the cache, byte for byte.
    tag_text(cfg, captions, 0.7, cache, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_answers_that_stay_bad_fail_the_stage_then_a_rerun_repairs_them(tmp_path):
    captions = write_captions(tmp_path, 12)
    out = tmp_path / "text_t07.parquet"
    def broken(body, n):
        item = item_of(body)
        return FAULTS[item][0] if item in FAULTS else good(body)
    with FakeOpenAIServer(broken) as server:
        params = params_for([server.base_url])
        result = run_stage(tmp_path, params, captions, out)
        assert len(server.posts()) == 5 + 7 * 3  # every bad item asked max_attempts times
        assert result.exit_code == 1 and not out.exists()
        message = result.stderr
        assert "Traceback" not in message
        assert "tag_text: at T=0.7, 7 of 12 items failed (" in message
        for reason in ("empty 1", "null 1", "refusal 1", "unparseable 3", "length 1"):
            assert reason in message
        assert "'c01' (empty: last of 3 answers: '')" in message and "and 2 more" in message
        assert "'c03' (refusal: last of 3 answers: \"I'm sorry, but I can't help with that request.\")" in message
        assert "max_failed_fraction = 0 allows" in message and "raise openai.max_tokens" in message

        # Allowed failures: the file is written with their verdicts; they get no tags.
        params["tag_text"]["openai"]["max_failed_fraction"] = 0.6
        result = run_stage(tmp_path, params, captions, out)
        assert result.exit_code == 0, result.output
        assert len(server.posts()) == 26 + 7 * 3  # failures re-asked, successes not
    df = read_raw(out).set_index("item_id")
    for item, (_, verdict) in FAULTS.items():
        assert df.loc[item, "verdict"] == verdict and df.loc[item, "candidates"] is None
    tags, metrics = clean(tmp_path, out)
    assert set(tags["item_id"]) == {"c00", "c08", "c09", "c10", "c11"}  # no row, no empty list
    assert metrics["failed"]["textual"] | {} == {"empty": 1, "null": 1, "refusal": 1, "unparseable": 3,
                                                 "length": 1, "http_4xx": 0, "retries_exhausted": 0,
                                                 "total": 7}
    assert metrics["responses"]["textual"]["items_failed"] == 7

    # A healthy server: only the failed items are asked (once each), without deleting the cache.
    with FakeOpenAIServer(lambda body, n: good(body)) as healthy:
        params["tag_text"]["openai"].update(base_urls=[healthy.base_url], max_failed_fraction=0.0)
        result = run_stage(tmp_path, params, captions, out)
        assert result.exit_code == 0, result.output
        assert sorted(item_of(p.body) for p in healthy.posts()) == sorted(FAULTS)
    assert (read_raw(out)["verdict"] == "ok").all()
    tags, metrics = clean(tmp_path, out)
    assert len(tags) == 12 and metrics["failed"]["textual"]["total"] == 0
    every_tag = {t for ts in tags["tags"] for t in ts}
    assert not every_tag & {"sorry", "tag", "score", ""}


def test_an_old_cache_is_migrated_and_its_rows_rejudged(tmp_path):
    captions = [Caption(f"c{i:02d}", f"item {i:02d} moves") for i in range(3)]
    cfg = text_cfg(["http://unused/v1"])
    requests = list(text_requests(captions, cfg, load_prompt(cfg.prompt), 0.7))
    cache = tmp_path / "cache.sqlite"
    db = sqlite3.connect(cache)  # the schema before verdicts existed
    db.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, response TEXT NOT NULL, finish_reason "
               "TEXT NOT NULL, model TEXT NOT NULL, latency_s REAL NOT NULL, created REAL NOT NULL)")
    for request, text in zip(requests, ["- motion\n- growth", "", REFUSAL]):
        db.execute("INSERT INTO answers VALUES (?, ?, 'stop', 'fake-model', 0.1, 0)",
                   (request_key("main", request.path, request.body), text))
    db.commit()
    db.close()
    with FakeOpenAIServer(lambda body, n: good(body)) as server:
        cfg = text_cfg([server.base_url])
        answered = generate_answers(text_requests(captions, cfg, load_prompt(cfg.prompt), 0.7),
                                    cfg.openai, cache, 3, "", "t")
        assert sorted(item_of(p.body) for p in server.posts()) == ["c01", "c02"]
    assert [a.cached for a in answered] == [True, False, False] and all(a.ok for a in answered)
    assert answered[0].items == ["motion", "growth"]
    verdicts = sqlite3.connect(cache).execute("SELECT verdict FROM answers").fetchall()
    assert sorted(v for (v,) in verdicts) == ["ok", "ok", "ok"]


def test_over_long_answers_are_capped_and_counted(tmp_path):
    captions = write_captions(tmp_path, 3)
    responder = lambda body, n: Reply(long_list(14866)) if item_of(body) == "c01" else good(body)
    with FakeOpenAIServer(responder) as server:
        rows = tag_text(text_cfg([server.base_url]), captions, 0.7, tmp_path / "c.sqlite",
                        tmp_path / "raw.parquet")
    row = rows[1]
    assert row.verdict == "too_long" and row.candidates == [f"concept {i}" for i in range(30)]
    tags, metrics = clean(tmp_path, tmp_path / "raw.parquet")
    assert len(tags.set_index("item_id").loc["c01", "tags"]) <= 30
    assert metrics["responses"]["textual"]["too_long"] == 1


# -- per-item request failures -------------------------------------------------------------------

def test_a_4xx_on_one_item_does_not_stop_the_others(tmp_path):
    captions = write_captions(tmp_path, 6)
    out = tmp_path / "raw.parquet"
    responder = lambda body, n: Status(400, body='{"error": "prompt too long"}') if item_of(body) == "c03" else good(body)
    with FakeOpenAIServer(responder) as server:
        params = params_for([server.base_url], concurrency=2)
        result = run_stage(tmp_path, params, captions, out)
        assert result.exit_code == 1 and not out.exists() and "Traceback" not in result.output
        assert "1 of 6 items failed (http_4xx 1): 'c03' (http_4xx: " in result.stderr
        assert "HTTP 400 (not retried)" in result.stderr and "prompt too long" in result.stderr
        assert len(server.posts()) == 6  # everything else was asked; the 4xx was not retried
        params["tag_text"]["openai"]["max_failed_fraction"] = 0.2
        assert run_stage(tmp_path, params, captions, out).exit_code == 0
    df = read_raw(out).set_index("item_id")
    assert df.loc["c03", "verdict"] == "http_4xx" and df["response"].isna().sum() == 1
    assert df.loc["c03", "candidates"] is None and df["candidates"].isna().sum() == 1
    assert (read_raw(out)["verdict"] == "ok").sum() == 5


# -- replicas ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dead_first", [True, False])
def test_two_replicas_one_dead_completes_on_the_live_one(tmp_path, caplog, progress, dead_first):
    captions = write_captions(tmp_path, 8)
    dead = dead_url()
    with FakeOpenAIServer(lambda body, n: good(body)) as live:
        urls = [dead, live.base_url] if dead_first else [live.base_url, dead]
        with caplog.at_level(logging.WARNING):
            rows = tag_text(text_cfg(urls), captions, 0.7, tmp_path / "c.sqlite", tmp_path / "o.parquet")
        assert len(live.posts()) == 8
    assert [r.verdict for r in rows] == ["ok"] * 8
    startup = [r for r in caplog.records if f"cannot reach {dead.rstrip('/')}" in r.getMessage()]
    assert len(startup) == 1 and "going on with the 1 other replica" in startup[0].getMessage()
    assert any("replicas=1/2" in p for p in progress)


def test_all_replicas_down_at_start_fails_naming_each(tmp_path):
    captions = write_captions(tmp_path, 2)
    a, b = dead_url(), dead_url()
    result = run_stage(tmp_path, params_for([a, b]), captions, tmp_path / "o.parquet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    for url in (a, b):
        assert f"cannot reach the OpenAI-compatible server at {url} (ConnectError" in result.stderr
    assert "tag_text.backend: offline" in result.stderr and not (tmp_path / "o.parquet").exists()


def test_a_replica_failing_everything_is_taken_out(tmp_path, caplog):
    captions = write_captions(tmp_path, 60)
    with FakeOpenAIServer(lambda body, n: Status(503)) as bad, \
            FakeOpenAIServer(lambda body, n: good(body), delay_s=0.005) as ok:
        cfg = text_cfg([bad.base_url, ok.base_url], concurrency=8, max_retries=3)
        with caplog.at_level(logging.WARNING):
            rows = tag_text(cfg, captions, 0.7, tmp_path / "c.sqlite", tmp_path / "o.parquet")
        assert all(r.verdict == "ok" for r in rows) and len(ok.posts()) == 60
        # breaker_failures (5) + the requests already in flight + a few probes, not ~half of 60
        assert len(bad.posts()) <= 15
    out_logs = [r.getMessage() for r in caplog.records if "taken out after 5 consecutive" in r.getMessage()]
    assert len(out_logs) == 1 and "HTTP 503" in out_logs[0]
    assert sum("HTTP 503" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records) == 1


def test_every_replica_failing_stops_the_stage_naming_each(tmp_path):
    captions = write_captions(tmp_path, 20)
    with FakeOpenAIServer(lambda body, n: Status(503, body="overloaded")) as a, \
            FakeOpenAIServer(lambda body, n: Status(502, body="bad gateway")) as b:
        start = time.monotonic()
        result = run_stage(tmp_path, params_for([a.base_url, b.base_url], max_retries=2), captions,
                           tmp_path / "o.parquet")
        elapsed = time.monotonic() - start
        a, b = a.base_url, b.base_url
    assert result.exit_code == 1 and "Traceback" not in result.output and elapsed < 20
    assert "every replica of the OpenAI-compatible server was taken out" in result.stderr
    assert f"{a}: dead, last error: {a}: HTTP 503: overloaded" in result.stderr
    assert f"{b}: dead, last error: {b}: HTTP 502: bad gateway" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


# -- rate limits and deadlines -------------------------------------------------------------------

@pytest.mark.parametrize("retry_after", ["0.1", None])
def test_a_server_capped_at_4_in_flight_completes_with_the_default_concurrency(tmp_path, retry_after):
    captions = write_captions(tmp_path, 96)
    defaults = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["tag_text"]["openai"]
    assert defaults["concurrency"] == 32
    with FakeOpenAIServer(lambda body, n: good(body), delay_s=0.05, max_in_flight=4,
                          cap_retry_after=retry_after) as server:
        cfg = text_cfg([server.base_url], concurrency=32, max_retries=6, backoff_s=0.05, max_backoff_s=0.5)
        rows = tag_text(cfg, captions, 0.7, tmp_path / "c.sqlite", tmp_path / "o.parquet")
        assert all(r.verdict == "ok" for r in rows)
        assert server.peak_in_flight <= 4
        # Used at its cap, not hammered: after the first burst (28 of 32 rejected) the window
        # shrinks to the cap and only probes above it. Measured: 25-40 rejections; with a fixed
        # window of 32 (no AIMD) 90-150, and the old lock-step retries failed the stage.
        assert server.capped <= 60, server.capped


def test_a_trickling_answer_is_abandoned_after_timeout_s(tmp_path):
    captions = write_captions(tmp_path, 1)
    responder = lambda body, n: Trickle(good(body), byte_delay_s=0.05) if n == 0 else good(body)
    with FakeOpenAIServer(responder) as server:
        start = time.monotonic()
        rows = tag_text(text_cfg([server.base_url], timeout_s=0.5), captions, 0.7, tmp_path / "c.sqlite",
                        tmp_path / "o.parquet")
        elapsed = time.monotonic() - start
    assert rows[0].verdict == "ok" and len(server.posts()) == 2
    # One 0.5 s attempt abandoned (its body, a byte every 0.05 s, would take ~10 s: no gap
    # between bytes ever reaches timeout_s), then one answered.
    assert elapsed < 3.0
    with FakeOpenAIServer(lambda body, n: Trickle(good(body), byte_delay_s=0.05)) as server:
        start = time.monotonic()
        cfg = text_cfg([server.base_url], timeout_s=0.5, max_retries=1, max_failed_fraction=1.0)
        rows = tag_text(cfg, captions, 0.7, tmp_path / "d.sqlite", tmp_path / "p.parquet")
        elapsed = time.monotonic() - start
    assert rows[0].verdict == "retries_exhausted" and "no complete answer within 0.5 s" in rows[0].detail
    assert elapsed < 3.0


# -- determinism and visibility ----------------------------------------------------------------

def test_two_fresh_runs_give_byte_identical_parquet(tmp_path):
    captions = write_captions(tmp_path, 16)
    def responder(body, n):  # random-ish latency: completion order differs between runs
        time.sleep((hash((body["seed"], n)) % 7) / 1000)
        item = item_of(body)
        if item == "c05" and body["seed"] == derive_seed(1234, item, 0.7):
            return Reply(REFUSAL)
        return Reply(long_list(40)) if item == "c09" else good(body)
    outs = []
    for run in ("a", "b"):
        with FakeOpenAIServer(responder) as server:
            rows = tag_text(text_cfg([server.base_url], concurrency=8), captions, 0.7,
                            tmp_path / f"cache_{run}.sqlite", tmp_path / f"raw_{run}.parquet")
        assert {r.verdict for r in rows} == {"ok", "too_long"}
        outs.append((tmp_path / f"raw_{run}.parquet").read_bytes())
    assert outs[0] == outs[1]
    offline = default_params()
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(offline))
    cfg = from_mapping(TagTextConfig, offline["tag_text"], "tag_text")
    for run in ("a", "b"):
        tag_text(cfg, captions, 0.8, tmp_path / "unused.sqlite", tmp_path / f"off_{run}.parquet")
    assert (tmp_path / "off_a.parquet").read_bytes() == (tmp_path / "off_b.parquet").read_bytes()


def test_retries_show_in_the_progress_bar_and_are_logged_once(tmp_path, caplog, progress):
    captions = write_captions(tmp_path, 6)
    asked: list[str] = []
    def responder(body, n):
        asked.append(item_of(body))
        return Status(500, body="hiccup") if asked.count("c00") <= 2 and asked[-1] == "c00" else good(body)
    with FakeOpenAIServer(responder) as server:
        url = server.base_url
        cfg = text_cfg([server.base_url], concurrency=2, backoff_s=0.2, max_backoff_s=0.4,
                       breaker_failures=10)
        with caplog.at_level(logging.INFO):
            rows = tag_text(cfg, captions, 0.7, tmp_path / "c.sqlite", tmp_path / "o.parquet")
    assert all(r.verdict == "ok" for r in rows)
    retry_logs = [r for r in caplog.records if "HTTP 500" in r.getMessage()]
    assert len(retry_logs) == 1 and "further http_500 answers" in retry_logs[0].getMessage()
    assert any("retrying=1" in p for p in progress)  # the stall is visible while c00 waits
    assert progress[-1] == "ok=6 failed=0 reasked=0 retrying=0 in_flight=0 replicas=1/1"
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("endpoints: ")]
    assert summary == [f"endpoints: {url}: live, 6 answers, http_500 2"]
    assert not [r for r in caplog.records if r.name == "httpx"]  # no line per request
