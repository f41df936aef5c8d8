"""Order-preserving, bounded-lookahead map over an executor (threads or processes)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], pool: Executor, window: int) -> Iterator[R]:
    """``map(fn, items)`` on ``pool``, in input order, with at most ``window`` items in flight.

    Unlike ``Executor.map`` it does not consume ``items`` up front, so a long stream of large
    inputs (decoded frames, JPEG bytes) never sits in memory at once. Leaving the loop early
    cancels what has not started.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
