"""ordered_map: input order, bounded look-ahead, early exit."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.parallel import ordered_map


def test_results_come_in_input_order_whatever_finishes_first():
    def slow_first(x: int) -> int:
        time.sleep(0.02 if x % 3 == 0 else 0.0)
        return x * x

    with ThreadPoolExecutor(3) as pool:
        assert list(ordered_map(slow_first, range(20), pool, 4)) == [x * x for x in range(20)]


def test_never_more_than_window_items_taken_ahead_of_the_consumer():
    taken = []

    def items():
        for i in range(50):
            taken.append(i)
            yield i

    with ThreadPoolExecutor(2) as pool:
        for got in ordered_map(lambda x: x, items(), pool, 3):
            assert len(taken) - got <= 3  # at most `window` submitted beyond the one consumed


def test_early_exit_starts_nothing_new_and_errors_propagate():
    started = []
    gate = threading.Event()

    def work(x: int) -> int:
        started.append(x)
        gate.wait(5)
        return x

    with ThreadPoolExecutor(1) as pool:
        stream = ordered_map(work, range(100), pool, 4)
        gate.set()
        assert next(stream) == 0
        stream.close()
    assert len(started) <= 5

    def boom(x: int) -> int:
        if x == 2:
            raise ValueError("bad item 2")
        return x

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="bad item 2"):
        list(ordered_map(boom, range(5), pool, 2))
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="window must be >= 1"):
        list(ordered_map(boom, range(5), pool, 0))
