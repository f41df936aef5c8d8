"""Async client for OpenAI-compatible servers (what ``vllm serve`` speaks).

One client spreads requests over several endpoints through a :class:`ReplicaPool` (per-replica
circuit breaker and AIMD concurrency window, see ``pipeline.tags.replicas``) and retries what is
worth retrying: connection errors, dropped connections, timeouts, HTTP 429 (honouring
``Retry-After``), 5xx and malformed 200 bodies. Other 4xx answers are this request's problem:
it fails at once (with reason ``http_4xx``) and the caller carries on with the other items.

``timeout_s`` bounds a whole attempt (connect, wait, headers and body), not the gap between
bytes: a server trickling its answer is abandoned after ``timeout_s``. Retry delays use full
jitter (uniform in [0, backoff]) so a burst of rejected requests does not come back in
lock-step; a ``Retry-After`` is waited out first (capped at ``max_backoff_s``). A 429 counts
towards ``max_retries`` only when no request succeeded anywhere since this request's previous
try: a server that caps requests in flight makes progress and is waited on, one that refuses
everything is given up on. Each retry cause is logged once per endpoint, then only counted.
The API key comes only from the environment variable the config names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from pipeline.tags.replicas import NoReplicaLeft, Outcome, ReplicaPool, ServerUnreachable
from pipeline.tags.server import launch_argv

log = logging.getLogger(__name__)

__all__ = ["OpenAIConfig", "OpenAIClient", "Completion", "RequestFailed", "ServerUnreachable",
           "NoReplicaLeft", "parse_completion"]

FailReason = Literal["http_4xx", "retries_exhausted"]


class RequestFailed(RuntimeError):
    """One request failed for good: a non-retryable answer (``http_4xx``) or retries exhausted."""

    def __init__(self, message: str, reason: FailReason) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OpenAIConfig:
    """Server, model, sampling and robustness knobs of the ``openai`` backend.

    Answers (see ``pipeline.tags.parse.judge_answer``): an answer that is no tag list (empty,
    null, refusal, table, garbage, cut by ``max_tokens``) is re-asked with a derived seed, up to
    ``max_attempts`` answers per item; then the item counts as failed. An answer with more than
    ``max_tags`` candidate tags keeps the first ``max_tags`` (counted as ``too_long``). After
    asking everything, the stage fails unless failed items / all items <= ``max_failed_fraction``
    (allowed failures get no tags and are counted in metrics/tags.json).

    Replicas: a replica with ``breaker_failures`` consecutive failures is taken out and probed
    again after ``backoff_s`` (doubling up to ``max_backoff_s``); after ``max_retries`` failed
    probes it is out for good. The stage fails only when no replica is left.
    """

    base_urls: list[str]  # e.g. ["http://127.0.0.1:8000/v1"]; several = replicas, load spread
    model: str  # the served model name (``--served-model-name`` or the HF id)
    revision: str  # model revision/commit: recorded and part of every cache key
    api_key_env: str  # name of the env variable holding the key; "" = send none
    concurrency: int  # requests in flight at once, over all endpoints (each adapts below it)
    timeout_s: float  # bound on one whole attempt: connect + wait + full body
    max_retries: int  # transport retries of one request after its first try
    backoff_s: float  # first retry delay (full jitter); doubles each retry
    max_backoff_s: float  # cap on any backoff, Retry-After included
    top_p: float
    max_tokens: int
    structured_outputs: dict[str, Any] | None  # vLLM ``structured_outputs`` (e.g. {"regex": ...})
    max_attempts: int  # answers asked per item (the first + re-asks of bad answers)
    max_tags: int  # candidate tags kept from one answer (the rest is cut and counted)
    max_failed_fraction: float  # failed items the stage tolerates, as a share of all items
    breaker_failures: int  # consecutive failures that take a replica out
    launch: bool  # start/stop the server around the stage (one endpoint only)
    launch_command: list[str]  # argv of the server; --host/--port come from base_urls[0]
    launch_timeout_s: float  # how long to wait for /health

    def __post_init__(self) -> None:
        if not self.base_urls:
            raise ValueError("base_urls must list at least one endpoint")
        for url in self.base_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_urls: {url!r} is not an http(s) URL")
        if len({u.rstrip("/") for u in self.base_urls}) != len(self.base_urls):
            raise ValueError(f"base_urls lists an endpoint twice: {self.base_urls}")
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
        if self.max_attempts < 1 or self.max_tags < 1 or self.breaker_failures < 1:
            raise ValueError("max_attempts, max_tags and breaker_failures must be >= 1")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise ValueError(f"max_failed_fraction must be in [0, 1], got {self.max_failed_fraction}")
        if self.launch:
            if len(self.base_urls) != 1 or not self.launch_command:
                raise ValueError("launch: true needs exactly one base_url and a launch_command")
            launch_argv(self.launch_command, self.base_urls[0])  # refuses a --port/base_url clash


@dataclass(frozen=True)
class Completion:
    """One answer: generated text (None for JSON null), why it stopped, how long it took."""

    text: str | None
    finish_reason: str
    model: str
    latency_s: float
    endpoint: str
    attempts: int


Sleep = Callable[[float], Awaitable[None]]


def parse_completion(payload: Any, chat: bool) -> tuple[str | None, str, str]:
    """(text, finish_reason, model) from a response body; ValueError when malformed.

    A ``null`` content is returned as None (not ""): it is a failed answer, judged as such.
    """
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
    if text is not None and not isinstance(text, str):
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
    """Use as ``async with OpenAIClient(cfg) as client: await client.check(); await client.post(...)``."""

    def __init__(self, cfg: OpenAIConfig, *, start_hint: str = "", sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.start_hint = start_hint
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self.pool = ReplicaPool([u.rstrip("/") for u in cfg.base_urls], max_window=cfg.concurrency,
                                breaker_failures=cfg.breaker_failures, max_probes=cfg.max_retries,
                                cooldown_s=max(cfg.backoff_s, 1e-3), max_cooldown_s=max(cfg.max_backoff_s, 1e-3),
                                rng=self._rng, clock=clock)
        self.retrying = 0  # requests waiting out a retry delay right now
        self._warned: set[tuple[str, str]] = set()
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> OpenAIClient:
        n = len(self.pool.replicas)
        limits = httpx.Limits(max_connections=self.cfg.concurrency + n,
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

    # -- start-up ---------------------------------------------------------------------------
    async def _check_one(self, url: str) -> str | None:
        """None when ``url`` serves the model; else why it is down. Raises on misconfiguration."""
        try:
            response = await self.http.get(f"{url}/models", timeout=min(10.0, self.cfg.timeout_s))
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}"
        if response.status_code in (401, 403):
            raise ServerUnreachable(
                f"{url} refused the API key (HTTP {response.status_code}); put the key in the "
                f"environment variable {self.cfg.api_key_env or '<api_key_env>'}")
        if response.status_code != 200:
            return f"/models answered HTTP {response.status_code}: {response.text[:300]}"
        try:
            served = [m.get("id") for m in response.json().get("data", [])]
        except (ValueError, AttributeError):
            raise ServerUnreachable(f"{url}/models did not return an OpenAI model list") from None
        if self.cfg.model not in served:
            raise ServerUnreachable(
                f"{url} does not serve model '{self.cfg.model}' (it serves {served}); "
                f"fix the 'model' param or the server's --served-model-name")
        return None

    async def check(self) -> None:
        """Every endpoint is asked for ``/models`` at once; the stage goes on with those alive.

        Fails when none answers (naming each endpoint and its error), or when one answers but is
        misconfigured (refused key, other model): that is no transient fault. A dead replica is
        logged once and probed again later (it may be starting up).
        """
        urls = [r.url for r in self.pool.replicas]
        errors = await asyncio.gather(*(self._check_one(u) for u in urls))
        down = [(u, e) for u, e in zip(urls, errors) if e is not None]
        if len(down) == len(urls):
            lines = "\n".join(f"cannot reach the OpenAI-compatible server at {u} ({e})." for u, e in down)
            raise ServerUnreachable(f"{lines}\n{self.start_hint}".rstrip())
        for url, error in down:
            log.warning("cannot reach %s (%s); going on with the %d other replica(s), probing it "
                        "again later", url, error, len(urls) - len(down))
            self.pool.mark_down(url, error)

    # -- requests ---------------------------------------------------------------------------
    async def _attempt(self, url: str, path: str, body: dict[str, Any], chat: bool) -> tuple[Outcome, Completion | None]:
        """One try on one replica, bounded as a whole by ``timeout_s``."""
        start = self._clock()
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                response = await self.http.post(url + path, json=body)
        except (TimeoutError, httpx.TimeoutException):
            return Outcome("failed", "timeout", f"{url}: no complete answer within {self.cfg.timeout_s:g} s"), None
        except httpx.TransportError as err:  # refused, reset, dropped mid-response
            return Outcome("failed", "connection", f"{url}: connection error ({type(err).__name__}: {err})"), None
        status = response.status_code
        if status == 200:
            try:
                text, finish, model = parse_completion(response.json(), chat)
            except ValueError as err:
                return Outcome("failed", "malformed", f"{url}: malformed 200 response ({err}): "
                                                      f"{response.text[:200]!r}"), None
            done = Completion(text, finish, model or self.cfg.model, self._clock() - start, url, 0)
            return Outcome("ok"), done
        error = f"{url}: HTTP {status}: {response.text[:200]}"
        if status == 429:
            return Outcome("throttled", "http_429", error, True, _retry_after(response)), None
        if status >= 500 or status == 408:
            return Outcome("failed", f"http_{status}", error, status == 503, _retry_after(response)), None
        return Outcome("rejected", f"http_{status}", f"{url}{path} answered HTTP {status} (not retried): "
                                                     f"{response.text[:500]}"), None

    def _delay(self, tries: int, retry_after: float | None) -> float:
        """Retry-After (capped) plus full jitter over the exponential backoff."""
        backoff = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** (tries - 1))
        base = min(retry_after, self.cfg.max_backoff_s) if retry_after is not None else 0.0
        return base + backoff * self._rng.random()

    def _note(self, url: str, outcome: Outcome) -> None:
        """Log the first retry of each cause per endpoint; later ones are only counted."""
        if (url, outcome.cause) in self._warned:
            return
        self._warned.add((url, outcome.cause))
        log.warning("%s; retrying (further %s answers from %s are counted, not logged)",
                    outcome.error, outcome.cause, url)

    async def post(self, path: str, body: dict[str, Any]) -> Completion:
        """POST ``body`` to ``<endpoint><path>`` with retries; return the parsed answer."""
        chat = path.endswith("/chat/completions")
        counted, tries, progress, avoid = 0, 0, self.pool.successes, None
        while True:
            lease = await self.pool.acquire(avoid)
            try:
                outcome, done = await self._attempt(lease.replica.url, path, body, chat)
            except BaseException:
                self.pool.release(lease, Outcome("cancelled"))
                raise
            self.pool.release(lease, outcome)
            tries += 1
            if done is not None:
                return Completion(done.text, done.finish_reason, done.model, done.latency_s,
                                  done.endpoint, tries)
            if outcome.kind == "rejected":
                raise RequestFailed(outcome.error, "http_4xx")
            if outcome.kind == "throttled" and self.pool.successes > progress:
                progress = self.pool.successes  # the server is making progress: wait, don't give up
            else:
                counted += 1
            self._note(lease.replica.url, outcome)
            if counted > self.cfg.max_retries:
                raise RequestFailed(f"gave up after {tries} attempts; last error: {outcome.error}",
                                    "retries_exhausted")
            avoid = lease.replica.url
            self.retrying += 1
            try:
                await self._sleep(self._delay(tries, outcome.retry_after))
            finally:
                self.retrying -= 1

    def summary(self) -> str:
        """Per endpoint: answers, and failed/throttled attempts by cause (for the stage's log)."""
        parts = []
        for r in self.pool.replicas:
            causes = ", ".join(f"{c} {n}" for c, n in sorted(r.causes.items())) or "no retries"
            parts.append(f"{r.url}: {r.state}, {r.successes} answers, {causes}")
        return "; ".join(parts)
