"""Ask an OpenAI-compatible server for every (item, temperature) answer not yet in the cache.

Requests are produced lazily (a video's frames are base64-encoded only when its turn comes),
checked against the cache, and the misses are fed through a bounded queue to ``concurrency``
workers. Each answer is committed to the cache before the next one is taken, so a killed run
loses at most the requests in flight. The server is contacted (and launched, if asked) only
when there is at least one miss: a fully cached rerun needs no server at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.tags.cache import Answer, AnswerCache, request_key
from pipeline.tags.client import OpenAIClient, OpenAIConfig, RequestFailed
from pipeline.tags.server import launched_server


@dataclass(frozen=True)
class TagRequest:
    """One request to send: which item, with which seed, to which API path, with what body."""

    item_id: str
    seed: int
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Answered:
    """The answer for one item (from the cache or the server)."""

    item_id: str
    seed: int
    answer: Answer
    cached: bool


async def _generate(requests: Iterable[TagRequest], cfg: OpenAIConfig, cache: AnswerCache,
                    start_hint: str, server_log: Path, progress: tqdm) -> list[Answered]:
    results: dict[int, Answered] = {}
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * cfg.concurrency)
    stack = contextlib.AsyncExitStack()
    client: OpenAIClient | None = None
    opening = asyncio.Lock()

    async def get_client() -> OpenAIClient:
        nonlocal client
        async with opening:
            if client is None:
                if cfg.launch:
                    # Blocking start-up runs in a thread; the loop keeps serving cache hits.
                    cm = launched_server(cfg.launch_command, cfg.base_urls[0], cfg.launch_timeout_s,
                                         server_log)
                    await asyncio.to_thread(cm.__enter__)
                    stack.push(lambda *exc: cm.__exit__(*exc))
                opened = await stack.enter_async_context(OpenAIClient(cfg, start_hint=start_hint))
                await opened.check()
                client = opened
        return client

    async def worker() -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            index, request, key = job
            active = await get_client()
            try:
                done = await active.post(request.path, request.body)
            except RequestFailed as err:
                raise RequestFailed(f"item {request.item_id!r}: {err}") from None
            answer = Answer(done.text, done.finish_reason, done.model, done.latency_s)
            cache.put(key, answer)
            results[index] = Answered(request.item_id, request.seed, answer, cached=False)
            progress.update()

    async def produce() -> None:
        for index, request in enumerate(requests):
            key = request_key(cfg.revision, request.path, request.body)
            hit = cache.get(key)
            if hit is not None:
                results[index] = Answered(request.item_id, request.seed, hit, cached=True)
                progress.update()
            else:
                await queue.put((index, request, key))
        for _ in range(cfg.concurrency):
            await queue.put(None)

    tasks = [asyncio.create_task(produce())]
    tasks += [asyncio.create_task(worker()) for _ in range(cfg.concurrency)]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # re-raise the first failure
    finally:
        await stack.aclose()
    return [results[i] for i in range(len(results))]


def generate_answers(requests: Iterable[TagRequest], cfg: OpenAIConfig, cache_path: Path,
                     total: int | None, start_hint: str, desc: str) -> list[Answered]:
    """Answers for ``requests`` in their order, asking the server only for cache misses."""
    server_log = cache_path.with_name(f"{cache_path.stem}.server.log")
    with AnswerCache(cache_path) as cache, tqdm(total=total, desc=desc, unit="item") as progress:
        answered = asyncio.run(_generate(requests, cfg, cache, start_hint, server_log, progress))
    return answered


def count_misses(answered: Iterable[Answered]) -> int:
    return sum(not a.cached for a in answered)


def iter_requests(items: Iterator[TagRequest]) -> Iterator[TagRequest]:
    """Refuse duplicate item ids early (they would silently share one answer)."""
    seen: set[str] = set()
    for request in items:
        if request.item_id in seen:
            raise ValueError(f"duplicate item id {request.item_id!r} in the tagging input")
        seen.add(request.item_id)
        yield request
