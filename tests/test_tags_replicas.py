"""The replica pool on its own (fake clock): AIMD windows, circuit breaker, probes, routing."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from pipeline.tags.replicas import NoReplicaLeft, Outcome, ReplicaPool

OK, THROTTLED = Outcome("ok"), Outcome("throttled", "http_429", "429", congestion=True)
FAIL = Outcome("failed", "http_500", "boom")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(urls=("a", "b"), window=8, breaker=3, probes=2, clock=None) -> ReplicaPool:
    return ReplicaPool(list(urls), max_window=window, breaker_failures=breaker, max_probes=probes,
                       cooldown_s=1.0, max_cooldown_s=4.0, rng=random.Random(0), clock=clock or Clock())


def run(coro):
    return asyncio.run(coro)


def test_a_burst_of_429s_halves_the_window_once_then_it_grows_back():
    async def go():
        p = pool(["a"], window=32)
        leases = [await p.acquire() for _ in range(32)]
        assert p.in_flight == 32
        for lease in leases[4:]:  # 28 rejected at once: one congestion event, one cut
            p.release(lease, THROTTLED)
        replica = p.replicas[0]
        assert replica.window == 16 and replica.cut_epoch == 1
        for lease in leases[:4]:
            p.release(lease, OK)
        assert 16 < replica.window < 16.3  # additive increase: ~1/window per success
        lease = await p.acquire()  # sent after the cut: its 429 cuts again
        p.release(lease, THROTTLED)
        assert replica.window == pytest.approx((16 + 4 * 0.0625) / 2, abs=0.05)
        for _ in range(800):  # +1/window each: ~(32^2 - 8^2)/2 successes back to the top
            lease = await p.acquire()
            p.release(lease, OK)
        assert replica.window == 32  # never above the overall concurrency
    run(go())


def test_no_more_requests_in_flight_than_the_window():
    async def go():
        p = pool(["a"], window=4)
        leases = [await p.acquire() for _ in range(4)]
        waiter = asyncio.create_task(p.acquire())
        await asyncio.sleep(0.01)
        assert not waiter.done()  # the fifth waits for a slot
        p.release(leases[0], OK)
        assert (await asyncio.wait_for(waiter, 1)).replica.url == "a"
    run(go())


def test_breaker_takes_a_failing_replica_out_and_probes_it(caplog):
    async def go():
        clock = Clock()
        p = pool(clock=clock)
        a, b = p.replicas
        for _ in range(3):
            lease = await p.acquire(avoid="b")
            assert lease.replica is a
            p.release(lease, FAIL)
        assert a.state == "out" and p.live == 1
        for _ in range(5):  # while out, everything goes to b
            lease = await p.acquire()
            assert lease.replica is b
            p.release(lease, OK)
        clock.now = a.retry_at
        lease = await p.acquire(avoid="b")  # cooldown over: one probe goes to a
        assert lease.replica is a and a.state == "probing"
        other = await p.acquire(avoid="b")
        assert other.replica is b  # only one probe at a time
        p.release(other, OK)
        p.release(lease, OK)
        assert a.state == "live" and a.trips == 0 and p.live == 2
    with caplog.at_level(logging.INFO, logger="pipeline.tags.replicas"):
        run(go())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("taken out after 3 consecutive failures (last: boom)" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1


def test_failed_probes_lengthen_the_cooldown_then_the_replica_is_dead():
    async def go():
        clock = Clock()
        p = pool(["a", "b"], clock=clock, probes=2)
        a = p.replicas[0]
        p.mark_down("a", "ConnectError: refused")
        first = a.retry_at - clock.now
        assert a.state == "out" and 0.5 <= first <= 1.0
        clock.now = a.retry_at
        lease = await p.acquire(avoid="b")
        p.release(lease, FAIL)
        assert a.state == "out" and 1.0 <= a.retry_at - clock.now <= 2.0  # doubled (jittered)
        clock.now = a.retry_at
        lease = await p.acquire(avoid="b")
        p.release(lease, FAIL)
        assert a.state == "dead" and a.retry_at == clock.now + 4.0  # max_cooldown_s
        for _ in range(3):
            lease = await p.acquire(avoid="b")
            assert lease.replica.url == "b"
            p.release(lease, OK)
        clock.now += 4.0  # while b works, the dead replica gets a rare probe...
        lease = await p.acquire(avoid="b")
        assert lease.replica is a
        p.release(lease, FAIL)
        assert a.state == "dead" and a.retry_at == clock.now + 4.0
        clock.now += 4.0
        lease = await p.acquire(avoid="b")
        p.release(lease, OK)  # ...and comes back when it answers (e.g. done loading its model)
        assert a.state == "live" and p.live == 2
    run(go())


def test_no_replica_left_names_each_endpoint_and_its_last_error():
    async def go():
        p = pool(["http://a/v1", "http://b/v1"], breaker=1, probes=0)
        p.mark_down("http://a/v1", "ConnectError: refused")
        lease = await p.acquire()
        p.release(lease, Outcome("failed", "http_503", "http://b/v1: HTTP 503: overloaded"))
        with pytest.raises(NoReplicaLeft) as err:
            await p.acquire()
        return str(err.value)
    message = run(go())
    assert "http://a/v1: dead, last error: ConnectError: refused" in message
    assert "http://b/v1: dead, last error: http://b/v1: HTTP 503: overloaded" in message


def test_a_429_or_4xx_is_no_ill_health_and_a_cancelled_probe_frees_the_slot():
    async def go():
        clock = Clock()
        p = pool(["a"], breaker=2, clock=clock)
        a = p.replicas[0]
        for outcome in (THROTTLED, Outcome("rejected", "http_400", "bad"), THROTTLED, THROTTLED):
            lease = await p.acquire()
            p.release(lease, outcome)
        assert a.state == "live" and a.failures == 0
        for _ in range(2):
            p.release(await p.acquire(), FAIL)
        clock.now = a.retry_at
        lease = await p.acquire()
        p.release(lease, Outcome("cancelled"))
        assert a.state == "out" and a.in_flight == 0 and a.retry_at <= clock.now
    run(go())


def test_load_is_spread_by_free_share_of_each_window():
    async def go():
        p = pool(["a", "b"], window=4)
        leases = [await p.acquire() for _ in range(8)]
        assert sorted(l.replica.url for l in leases) == ["a"] * 4 + ["b"] * 4
    run(go())
