"""Async client for OpenAI-compatible servers (what ``vllm serve`` speaks).

One client spreads requests over several endpoints (least in-flight first), bounds concurrency
with the caller's semaphore/workers, and retries what is worth retrying: connection errors,
dropped connections, timeouts, HTTP 429 (honouring ``Retry-After``), 5xx and malformed 200
bodies. Other 4xx answers are the caller's mistake and fail at once. The API key comes only
from the environment variable the config names.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


class ServerUnreachable(RuntimeError):
    """No answer from a configured endpoint before any work started."""


class RequestFailed(RuntimeError):
    """A request failed for good (non-retryable status or retries exhausted)."""


@dataclass(frozen=True)
class OpenAIConfig:
    """Server, model and sampling knobs of the ``openai`` backend."""

    base_urls: list[str]  # e.g. ["http://127.0.0.1:8000/v1"]; several = load spread
    model: str  # the served model name (``--served-model-name`` or the HF id)
    revision: str  # model revision/commit: recorded and part of every cache key
    api_key_env: str  # name of the env variable holding the key; "" = send none
    concurrency: int  # requests in flight at once, over all endpoints
    timeout_s: float  # per attempt, whole response
    max_retries: int  # retries after the first attempt
    backoff_s: float  # first retry delay; doubles each retry (with jitter)
    max_backoff_s: float  # cap on any delay, Retry-After included
    top_p: float
    max_tokens: int
    structured_outputs: dict[str, Any] | None  # vLLM ``structured_outputs`` (e.g. {"regex": ...})
    launch: bool  # start/stop the server around the stage (one endpoint only)
    launch_command: list[str]  # argv of the server, used when launch is true
    launch_timeout_s: float  # how long to wait for /health

    def __post_init__(self) -> None:
        if not self.base_urls:
            raise ValueError("base_urls must list at least one endpoint")
        for url in self.base_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_urls: {url!r} is not an http(s) URL")
        if not self.model:
            raise ValueError("model must name the served model")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout_s <= 0 or self.launch_timeout_s <= 0:
            raise ValueError("timeout_s and launch_timeout_s must be > 0")
        if self.max_retries < 0 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("need max_retries >= 0 and 0 <= backoff_s <= max_backoff_s")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.launch and (len(self.base_urls) != 1 or not self.launch_command):
            raise ValueError("launch: true needs exactly one base_url and a launch_command")


@dataclass(frozen=True)
class Completion:
    """One answer: generated text, why it stopped, how long the successful attempt took."""

    text: str
    finish_reason: str
    model: str
    latency_s: float
    endpoint: str
    attempts: int


Sleep = Callable[[float], Awaitable[None]]


def parse_completion(payload: Any, chat: bool) -> tuple[str, str, str]:
    """(text, finish_reason, model) from a response body; ValueError when malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise ValueError("no 'choices' list in the response")
    if not payload["choices"] or not isinstance(payload["choices"][0], dict):
        raise ValueError("empty 'choices' in the response")
    choice = payload["choices"][0]
    if chat:
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ValueError("choice has no 'message'")
        text = message.get("content")
    else:
        text = choice.get("text")
    if text is None:
        text = ""  # a server may send null content for an empty answer
    if not isinstance(text, str):
        raise ValueError(f"answer text is {type(text).__name__}, not a string")
    finish = choice.get("finish_reason") or "unknown"
    return text, str(finish), str(payload.get("model") or "")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


class OpenAIClient:
    """Use as ``async with OpenAIClient(cfg) as client: await client.post(path, body)``."""

    def __init__(self, cfg: OpenAIConfig, *, start_hint: str = "", sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.start_hint = start_hint
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._urls = [u.rstrip("/") for u in cfg.base_urls]
        self._in_flight = dict.fromkeys(self._urls, 0)
        self._turn = 0
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> OpenAIClient:
        limits = httpx.Limits(max_connections=self.cfg.concurrency + len(self._urls),
                              max_keepalive_connections=self.cfg.concurrency)
        timeout = httpx.Timeout(self.cfg.timeout_s, connect=min(10.0, self.cfg.timeout_s))
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("OpenAIClient used outside 'async with'")
        return self._http

    async def check(self) -> None:
        """Fail fast: every endpoint must answer ``GET /models`` and serve ``cfg.model``."""
        for url in self._urls:
            try:
                response = await self.http.get(f"{url}/models", timeout=min(10.0, self.cfg.timeout_s))
            except httpx.HTTPError as err:
                raise ServerUnreachable(
                    f"cannot reach the OpenAI-compatible server at {url} ({type(err).__name__}: "
                    f"{err}).\n{self.start_hint}".rstrip()) from None
            if response.status_code in (401, 403):
                raise ServerUnreachable(
                    f"{url} refused the API key (HTTP {response.status_code}); put the key in the "
                    f"environment variable {self.cfg.api_key_env or '<api_key_env>'}")
            if response.status_code != 200:
                raise ServerUnreachable(f"{url}/models answered HTTP {response.status_code}: "
                                        f"{response.text[:300]}\n{self.start_hint}".rstrip())
            try:
                served = [m.get("id") for m in response.json().get("data", [])]
            except (ValueError, AttributeError):
                raise ServerUnreachable(f"{url}/models did not return an OpenAI model list") from None
            if self.cfg.model not in served:
                raise ServerUnreachable(
                    f"{url} does not serve model '{self.cfg.model}' (it serves {served}); "
                    f"fix the 'model' param or the server's --served-model-name")

    def _pick(self, avoid: str | None) -> str:
        """Least in-flight endpoint, round-robin among ties; avoid the one that just failed."""
        candidates = [u for u in self._urls if u != avoid] or self._urls
        low = min(self._in_flight[u] for u in candidates)
        ties = [u for u in candidates if self._in_flight[u] == low]
        self._turn += 1
        return ties[self._turn % len(ties)]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.max_backoff_s)
        base = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** (attempt - 1))
        return base * (0.5 + 0.5 * self._rng.random())  # jitter: spread retries of a burst

    async def post(self, path: str, body: dict[str, Any]) -> Completion:
        """POST ``body`` to ``<endpoint><path>`` with retries; return the parsed answer."""
        chat = path.endswith("/chat/completions")
        attempt, failed = 0, None
        while True:
            url = self._pick(failed)
            retry_after: float | None = None
            self._in_flight[url] += 1
            start = time.monotonic()
            try:
                response = await self.http.post(url + path, json=body)
            except httpx.TimeoutException:
                reason = f"{url}: no answer within {self.cfg.timeout_s:g} s"
            except httpx.TransportError as err:  # refused, reset, dropped mid-response
                reason = f"{url}: connection error ({type(err).__name__}: {err})"
            else:
                latency = time.monotonic() - start
                status = response.status_code
                if status == 200:
                    try:
                        text, finish, model = parse_completion(response.json(), chat)
                    except ValueError as err:
                        reason = f"{url}: malformed 200 response ({err}): {response.text[:200]!r}"
                    else:
                        return Completion(text, finish, model or self.cfg.model, latency, url,
                                          attempt + 1)
                elif status == 429 or status >= 500:
                    retry_after = _retry_after(response)
                    reason = f"{url}: HTTP {status}: {response.text[:200]}"
                else:
                    raise RequestFailed(f"{url}{path} answered HTTP {status} (not retried): "
                                        f"{response.text[:500]}")
            finally:
                self._in_flight[url] -= 1
            attempt += 1
            failed = url
            if attempt > self.cfg.max_retries:
                raise RequestFailed(f"gave up after {attempt} attempts; last error: {reason}")
            await self._sleep(self._delay(attempt, retry_after))
