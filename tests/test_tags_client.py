"""The OpenAI-compatible backend against a loopback fake server: bodies, retries, failures."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket

import pytest

from pipeline.config import from_mapping
from pipeline.tags.bodies import Sampling, text_request, video_request
from pipeline.tags.client import OpenAIClient, OpenAIConfig, RequestFailed, ServerUnreachable
from pipeline.tags.generate import TagRequest, generate_answers
from pipeline.tags.inputs import Caption
from pipeline.tags.prompts import load_prompt
from pipeline.tags.seeds import derive_seed
from pipeline.tags.tag_text import TagTextConfig, text_requests
from tests.tags_fake_server import (Drop, FakeOpenAIServer, Garbage, Reply, Sleep, Status,
                                    default_params, draw_frames)


def openai_cfg(base_urls, **overrides) -> OpenAIConfig:
    raw = {**default_params()["tag_text"]["openai"], "base_urls": list(base_urls), **overrides}
    return from_mapping(OpenAIConfig, raw, "test.openai")


def text_cfg(base_url, **openai_overrides) -> TagTextConfig:
    raw = default_params()["tag_text"]
    raw = {**raw, "backend": "openai", "openai": {**raw["openai"], "base_urls": [base_url],
                                                    **openai_overrides}}
    return from_mapping(TagTextConfig, raw, "test.tag_text")


def one_request(path="/chat/completions", text="a dog runs") -> TagRequest:
    prompt = load_prompt("text_appx_c")
    p, body = text_request("fake-model", prompt, text, Sampling(0.7, 0.9, 7, 64, None), "chat")
    return TagRequest("c1", 7, p, body)


async def _post(cfg: OpenAIConfig, request: TagRequest, sleeps: list | None = None):
    async def fake_sleep(s):  # record the backoff instead of waiting it out
        if sleeps is not None:
            sleeps.append(s)
    async with OpenAIClient(cfg, sleep=fake_sleep) as client:
        await client.check()
        return await client.post(request.path, request.body)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- request bodies ---------------------------------------------------------------------------

def test_text_chat_request_body(tmp_path):
    captions = [Caption("cap-a", "a red square slides left"), Caption("cap-b", "two {braces} 1) x")]
    with FakeOpenAIServer() as server:
        cfg = text_cfg(server.base_url)
        reqs = list(text_requests(captions, cfg, load_prompt(cfg.prompt), 0.8))
        answers = generate_answers(reqs, cfg.openai, tmp_path / "c.sqlite", 2, "", "t")
    posts = server.posts()
    assert [p.path for p in posts] == ["/v1/chat/completions"] * 2
    by_seed = {p.body["seed"]: p.body for p in posts}
    for caption in captions:
        body = by_seed[derive_seed(1234, caption.item_id, 0.8)]
        assert body["model"] == "fake-model"
        assert body["temperature"] == 0.8 and body["top_p"] == 0.9 and body["max_tokens"] == 128
        assert body["n"] == 1 and body["stream"] is False
        assert "structured_outputs" not in body and not any(k.startswith("guided") for k in body)
        system, user = body["messages"]
        assert system == {"role": "system", "content": "A chat between a curious user and an "
                          "artificial intelligence assistant. The assistant gives helpful, detailed, "
                          "and polite answers to the user’s questions."}
        assert user["role"] == "user"
        assert user["content"].startswith("You are a conversational AI agent.")
        assert f"Given the following action: 1) {caption.text}\n" in user["content"]
        assert "ASSISTANT" not in user["content"] and "USER:" not in user["content"]
    assert [a.item_id for a in answers] == ["cap-a", "cap-b"]
    assert answers[0].answer.response.startswith("- tag of a red square slides left")


def test_completions_form_and_structured_outputs(tmp_path):
    regex = r"(- [a-z][a-z \-]{0,30}\n){10}"
    with FakeOpenAIServer() as server:
        cfg = text_cfg(server.base_url, structured_outputs={"regex": regex})
        cfg = dataclasses.replace(cfg, api="completions")
        reqs = list(text_requests([Caption("c", "a cat sleeps")], cfg, load_prompt(cfg.prompt), 1.0))
        generate_answers(reqs, cfg.openai, tmp_path / "c.sqlite", 1, "", "t")
    (post,) = server.posts()
    assert post.path == "/v1/completions"
    prompt = post.body["prompt"]
    assert prompt.startswith("A chat between a curious user") and prompt.endswith("ASSISTANT:")
    assert "\n\nUSER: You are a conversational AI agent." in prompt
    assert "1) a cat sleeps\n" in prompt
    assert post.body["structured_outputs"] == {"regex": regex}
    assert post.body["temperature"] == 1.0 and "messages" not in post.body


def test_video_request_carries_the_eight_jpegs_as_one_data_url():
    frames = draw_frames((20, 20, 20), [dict(shape="square", colour=(200, 0, 0), x0=20, y0=50,
                                             x1=70, y1=50, r0=8, r1=8)])
    assert len(frames) == 8
    prompt = load_prompt("video_appx_c")
    s = Sampling(0.9, 0.8, 99, 100, {"regex": "x"})
    path, body = video_request("vlm", prompt, frames, s, "video")
    assert path == "/chat/completions"
    (message,) = body["messages"]
    video, text = message["content"]
    assert text == {"type": "text", "text": prompt.user}
    assert text["text"].startswith("A general tag of an action is")
    url = video["video_url"]["url"]
    assert video["type"] == "video_url" and url.startswith("data:video/jpeg;base64,")
    parts = url[len("data:video/jpeg;base64,"):].split(",")
    assert [base64.b64decode(p, validate=True) for p in parts] == frames
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (0.9, 0.8, 99, 100)
    assert body["structured_outputs"] == {"regex": "x"}

    _, body = video_request("vlm", prompt, frames, s, "images")
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url"] * 8 + ["text"]
    decoded = [base64.b64decode(c["image_url"]["url"].split(",", 1)[1]) for c in content[:8]]
    assert decoded == frames and all(c["image_url"]["url"].startswith("data:image/jpeg;base64,")
                                     for c in content[:8])


# -- retries and failures -----------------------------------------------------------------------

@pytest.mark.parametrize("first", [Status(500), Status(503), Drop(), Garbage(),
                                   Status(200, body='{"choices": []}'), Sleep(2.0)],
                         ids=["500", "503", "dropped", "garbage", "no-choices", "timeout"])
def test_transient_failures_are_retried(first):
    with FakeOpenAIServer(lambda body, n: first if n == 0 else Reply("- ok")) as server:
        sleeps: list[float] = []
        done = asyncio.run(_post(openai_cfg([server.base_url], timeout_s=0.5), one_request(), sleeps))
    assert done.text == "- ok" and done.attempts == 2
    assert len(server.posts()) == 2 and len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.01  # first backoff: full jitter over backoff_s


def test_429_waits_retry_after_capped():
    script = [Status(429, {"Retry-After": "0.03"}), Status(429, {"Retry-After": "7"}), Reply("- fine")]
    with FakeOpenAIServer(lambda body, n: script[n]) as server:
        sleeps: list[float] = []
        done = asyncio.run(_post(openai_cfg([server.base_url], max_backoff_s=1.0), one_request(), sleeps))
    assert done.text == "- fine" and done.attempts == 3
    # Retry-After honoured, then capped at max_backoff_s; plus full jitter over the backoff.
    assert 0.03 <= sleeps[0] <= 0.03 + 0.01 and 1.0 <= sleeps[1] <= 1.0 + 0.02


def test_exponential_backoff_then_give_up():
    with FakeOpenAIServer(lambda body, n: Status(502)) as server:
        sleeps: list[float] = []
        cfg = openai_cfg([server.base_url], max_retries=3, backoff_s=0.01, max_backoff_s=0.025)
        with pytest.raises(RequestFailed, match=r"gave up after 4 attempts; last error: .*HTTP 502"):
            asyncio.run(_post(cfg, one_request(), sleeps))
    assert len(server.posts()) == 4
    caps = [0.01, 0.02, 0.025]  # doubling, capped; full jitter below each
    assert len(sleeps) == 3 and all(0 <= s <= c for s, c in zip(sleeps, caps))


def test_client_errors_are_not_retried():
    with FakeOpenAIServer(lambda body, n: Status(400, body='{"error": "bad seed"}')) as server:
        with pytest.raises(RequestFailed, match="HTTP 400 .*bad seed") as err:
            asyncio.run(_post(openai_cfg([server.base_url]), one_request()))
    assert len(server.posts()) == 1 and err.value.reason == "http_4xx"


@pytest.mark.parametrize("content", ["", None])
def test_empty_and_null_content_come_back_as_sent(content, tmp_path):
    """The client returns what the server said; judging it is the caller's business."""
    with FakeOpenAIServer(lambda body, n: Reply(content, "length")) as server:
        done = asyncio.run(_post(openai_cfg([server.base_url]), one_request()))
    assert (done.text, done.finish_reason, done.attempts) == (content, "length", 1)


def test_unreachable_server_fails_fast_with_how_to_start():
    cfg = openai_cfg([f"http://127.0.0.1:{closed_port()}/v1"])
    with pytest.raises(ServerUnreachable, match="cannot reach") as err:
        asyncio.run(_post(cfg, one_request()))
    assert "vllm serve" not in str(err.value)  # the hint comes from the stage...
    async def with_hint():
        async with OpenAIClient(cfg, start_hint="Start one: vllm serve X") as client:
            await client.check()
    with pytest.raises(ServerUnreachable, match="Start one: vllm serve X"):
        asyncio.run(with_hint())


def test_wrong_model_name_is_reported():
    with FakeOpenAIServer(model="served-name") as server:
        with pytest.raises(ServerUnreachable, match=r"does not serve model 'fake-model'.*served-name"):
            asyncio.run(_post(openai_cfg([server.base_url]), one_request()))


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MACVR_OPENAI_API_KEY", "s3cret")
    with FakeOpenAIServer() as server:
        asyncio.run(_post(openai_cfg([server.base_url]), one_request()))
    assert all(r.headers.get("Authorization") == "Bearer s3cret" for r in server.requests)
    monkeypatch.delenv("MACVR_OPENAI_API_KEY")
    with FakeOpenAIServer() as server:
        asyncio.run(_post(openai_cfg([server.base_url]), one_request()))
    assert all("Authorization" not in r.headers for r in server.requests)


def test_load_spreads_over_endpoints_and_avoids_a_failing_one(tmp_path):
    captions = [Caption(f"c{i}", f"caption number {i}") for i in range(24)]
    with FakeOpenAIServer(delay_s=0.02) as a, FakeOpenAIServer(delay_s=0.02) as b:
        cfg = text_cfg(a.base_url)
        cfg = dataclasses.replace(cfg, openai=openai_cfg([a.base_url, b.base_url]))
        reqs = list(text_requests(captions, cfg, load_prompt(cfg.prompt), 0.7))
        answers = generate_answers(reqs, cfg.openai, tmp_path / "c.sqlite", 24, "", "t")
        assert len(a.posts()) + len(b.posts()) == 24
        assert len(a.posts()) >= 6 and len(b.posts()) >= 6
    assert [x.item_id for x in answers] == [c.item_id for c in captions]
    with FakeOpenAIServer(lambda body, n: Status(503)) as bad, FakeOpenAIServer() as good:
        cfg2 = openai_cfg([bad.base_url, good.base_url], max_retries=2)
        reqs = list(text_requests(captions[:8], cfg, load_prompt(cfg.prompt), 0.9))
        answers = generate_answers(reqs, cfg2, tmp_path / "d.sqlite", 8, "", "t")
    assert len(answers) == 8 and len(good.posts()) == 8  # every retry moved to the other endpoint
    assert len(bad.posts()) <= 8
