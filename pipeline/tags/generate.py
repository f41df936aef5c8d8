"""Ask an OpenAI-compatible server for every (item, temperature) answer not yet in the cache.

Requests are produced lazily (a video's frames are base64-encoded only when its turn comes),
checked against the cache, and the misses are fed through a bounded queue to ``concurrency``
workers. Each answer is committed to the cache (with its verdict) before the next one is
taken, so a killed run loses at most the requests in flight. The server is contacted (and
launched, if asked) only when there is at least one miss: a fully cached rerun needs no server.

Answers are judged (``pipeline.tags.parse.judge_answer``). An item's attempts are its own
request (attempt 0) and re-asks with derived seeds (``seeds.attempt_seed``), each with its own
cache key; the first ok attempt in attempt order wins, and attempts are asked one after the
other, so the result does not depend on completion order. From the cache, the lowest cached ok
attempt is used without asking anything (successes are never re-asked); failed attempts are
asked again (a rerun against a healthy server repairs them). An item whose ``max_attempts``
answers are all bad, or whose request fails for good (4xx, retries exhausted), is a counted
failure; the other items go on. Only a server with no replica left stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.tags.cache import Answer, AnswerCache, Entry, request_key
from pipeline.tags.client import OpenAIClient, OpenAIConfig, RequestFailed
from pipeline.tags.parse import Judgement, judge_answer
from pipeline.tags.progress import TagProgress
from pipeline.tags.seeds import attempt_seed
from pipeline.tags.server import launch_argv, launched_server

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # progress postfix refresh period

# Decides whether an answer is usable and gives its items: tag lists by default
# (``judge_answer``); auxiliary captions pass a sentence judge (pipeline.aux_captions.judge).
Judge = Callable[[str | None, str], Judgement]


@dataclass(frozen=True)
class TagRequest:
    """One request to send: which item, with which seed, to which API path, with what body."""

    item_id: str
    seed: int
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """Attempt ``index`` of a request: its seed, body and cache key."""

    index: int
    seed: int
    body: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Answered:
    """The outcome for one item: the kept answer (or the last one tried) and its verdict.

    ``verdict`` is ``ok`` or why the item failed (an answer verdict, ``http_4xx`` or
    ``retries_exhausted``); ``items`` are the kept answer's candidate tags (uncapped), empty for
    a failure; ``cached``: no request was needed.
    """

    item_id: str
    seed: int
    attempt: int
    answer: Answer | None
    verdict: str
    detail: str
    items: list[str]
    cached: bool

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def attempts_of(request: TagRequest, cfg: OpenAIConfig) -> list[Attempt]:
    """The ``max_attempts`` attempts of a request (attempt 0 is the request itself)."""
    out = []
    for k in range(cfg.max_attempts):
        seed = attempt_seed(request.seed, k)
        body = request.body if k == 0 else {**request.body, "seed": seed}
        out.append(Attempt(k, seed, body, request_key(cfg.revision, request.path, body)))
    return out


def _snippet(text: str | None, chars: int = 60) -> str:
    if text is None:
        return "null"
    text = " ".join(text.split())
    return repr(text[:chars] + ("..." if len(text) > chars else ""))


def _judged(cache: AnswerCache, key: str, entry: Entry, judge: Judge = judge_answer) -> Judgement:
    """Judge a cached answer with the current validator, recording a changed verdict."""
    judgement = judge(entry.answer.response, entry.answer.finish_reason)
    if entry.verdict != judgement.verdict:
        cache.set_verdict(key, judgement.verdict)
    return judgement


def cached_answer(request: TagRequest, tries: list[Attempt], cache: AnswerCache,
                  judge: Judge = judge_answer) -> Answered | None:
    """The lowest cached ok attempt of ``request``, or None when it must be asked."""
    for attempt in tries:
        entry = cache.get(attempt.key)
        if entry is None:
            continue
        judgement = _judged(cache, attempt.key, entry, judge)
        if judgement.ok:
            return Answered(request.item_id, attempt.seed, attempt.index, entry.answer, "ok", "",
                            judgement.items, cached=True)
    return None


async def ask(request: TagRequest, tries: list[Attempt], client: OpenAIClient, cache: AnswerCache,
              progress: TagProgress, judge: Judge = judge_answer) -> Answered:
    """Ask the attempts of ``request`` in order until one is ok; a failure is a result, not raised."""
    last: tuple[Attempt, Answer | None, str] = (tries[0], None, "")
    for attempt in tries:
        try:
            done = await client.post(request.path, attempt.body)
        except RequestFailed as err:
            return Answered(request.item_id, attempt.seed, attempt.index, None, err.reason, str(err),
                            [], cached=False)
        answer = Answer(done.text, done.finish_reason, done.model, done.latency_s)
        judgement = judge(answer.response, answer.finish_reason)
        cache.put(attempt.key, answer, judgement.verdict)
        if judgement.ok:
            return Answered(request.item_id, attempt.seed, attempt.index, answer, "ok", "",
                            judgement.items, cached=False)
        last = (attempt, answer, judgement.verdict)
        if attempt.index + 1 < len(tries):
            progress.reask()
    attempt, answer, verdict = last
    detail = f"last of {len(tries)} answers: {_snippet(answer.response if answer else None)}"
    return Answered(request.item_id, attempt.seed, attempt.index, answer, verdict, detail, [], cached=False)


async def _generate(requests: Iterable[TagRequest], cfg: OpenAIConfig, cache: AnswerCache,
                    start_hint: str, server_log: Path, progress: TagProgress,
                    judge: Judge) -> list[Answered]:
    results: dict[int, Answered] = {}
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * cfg.concurrency)
    stack = contextlib.AsyncExitStack()
    client: OpenAIClient | None = None
    open_error: BaseException | None = None
    opening = asyncio.Lock()

    async def get_client() -> OpenAIClient:
        nonlocal client, open_error
        async with opening:
            if open_error is not None:
                raise open_error
            if client is None:
                try:
                    if cfg.launch:
                        # Blocking start-up runs in a thread; the loop keeps serving cache hits.
                        argv = launch_argv(cfg.launch_command, cfg.base_urls[0])
                        log.info("starting the model server: %s", " ".join(argv))
                        cm = launched_server(argv, cfg.base_urls[0], cfg.launch_timeout_s, server_log)
                        await asyncio.to_thread(cm.__enter__)
                        stack.push(lambda *exc: cm.__exit__(*exc))
                    opened = await stack.enter_async_context(OpenAIClient(cfg, start_hint=start_hint))
                    await opened.check()
                except Exception as err:  # every later worker gets the same error, no second launch
                    open_error = err
                    raise
                client = opened
        return client

    async def worker() -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            index, request, tries = job
            active = await get_client()
            answered = await ask(request, tries, active, cache, progress, judge)
            results[index] = answered
            progress.item(answered.ok)
            progress.show(client)

    async def produce() -> None:
        for index, request in enumerate(requests):
            tries = attempts_of(request, cfg)
            hit = cached_answer(request, tries, cache, judge)
            if hit is not None:
                results[index] = hit
                progress.item(True, cached=True)
            else:
                await queue.put((index, request, tries))
        for _ in range(cfg.concurrency):
            await queue.put(None)

    async def refresh() -> None:
        while True:
            progress.show(client)
            await asyncio.sleep(REFRESH_S)

    ticker = asyncio.create_task(refresh())
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
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        progress.show(client)
        if client is not None:
            log.info("endpoints: %s", client.summary())
        await stack.aclose()
    return [results[i] for i in range(len(results))]


def generate_answers(requests: Iterable[TagRequest], cfg: OpenAIConfig, cache_path: Path,
                     total: int | None, start_hint: str, desc: str,
                     judge: Judge = judge_answer) -> list[Answered]:
    """Outcomes for ``requests`` in their order, asking the server only for what is not cached ok.

    ``judge`` decides what a usable answer is (tag lists unless told otherwise).
    """
    server_log = cache_path.with_name(f"{cache_path.stem}.server.log")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO is one line per request
    progress = TagProgress(total, desc)
    try:
        with AnswerCache(cache_path) as cache, logging_redirect_tqdm():
            answered = asyncio.run(_generate(requests, cfg, cache, start_hint, server_log, progress, judge))
    finally:
        progress.close()
    asked = [a for a in answered if not a.cached]
    log.info("%s: %d items, %d from the cache, %d asked (%d re-asks), %d failed", desc,
             len(answered), len(answered) - len(asked), len(asked), progress.reasked,
             sum(not a.ok for a in answered))
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
