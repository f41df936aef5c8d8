"""Per-endpoint health for the OpenAI client: a circuit breaker and an AIMD concurrency window.

Why: with several replicas, one that is down or answers 503 to everything must not fail the
stage or eat requests, and a server that caps requests in flight (429 above N) must be used at
its cap instead of being hammered in lock-step.

Breaker states: ``live`` -> ``out`` after ``breaker_failures`` consecutive failures (connection
errors, timeouts, 5xx, malformed bodies; a 429 is throttling, not ill health), or when it was
unreachable at start-up -> after a cooldown (``cooldown_s`` doubling per failed probe, capped at
``max_cooldown_s``, jittered) one real request is let through as a probe (``probing``) ->
``live`` again on any answer, or ``out`` with a longer cooldown -> ``dead`` after ``max_probes``
failed probes in a row. Requests go only to live replicas (and to one probe at a time). When
every replica is dead, :meth:`ReplicaPool.acquire` raises :class:`NoReplicaLeft` naming each
endpoint and its last error; while another replica still works, a dead one is probed once every
``max_cooldown_s`` (a vLLM replica may take minutes to load its model).

AIMD window per replica: starts at ``max_window`` (the overall concurrency); a 429 or 503 halves
it (at most once per round trip: answers to requests sent before the last cut do not cut
again), each success adds ``1/window`` (about one slot per window of successes). A replica
never gets more requests in flight than ``floor(window)`` (at least one).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

State = Literal["live", "out", "probing", "dead"]
Kind = Literal["ok", "throttled", "failed", "rejected", "cancelled"]


class ServerUnreachable(RuntimeError):
    """No usable endpoint: none answered at start-up, or every replica died during the run."""


class NoReplicaLeft(ServerUnreachable):
    """Every replica was taken out for good during the run."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt on one replica ended, as far as the replica's health is concerned.

    ``ok``: an answer; ``throttled``: HTTP 429; ``failed``: the replica misbehaved (counts
    towards its breaker); ``rejected``: a 4xx for this request (the replica is fine);
    ``cancelled``: the caller gave up (says nothing about the replica).
    ``congestion``: a 429 or 503, which also shrinks the replica's window.
    """

    kind: Kind
    cause: str = ""  # short label for counting and logging: timeout, connection, http_503, ...
    error: str = ""  # full message
    congestion: bool = False
    retry_after: float | None = None


@dataclass
class Replica:
    url: str
    window: float
    state: State = "live"
    in_flight: int = 0
    failures: int = 0  # consecutive failures
    trips: int = 0  # consecutive times taken out (failed probes + 1)
    retry_at: float = 0.0  # when an ``out`` replica may be probed
    cut_epoch: int = 0  # bumped by every window cut
    successes: int = 0
    last_error: str = ""
    causes: dict[str, int] = field(default_factory=dict)  # failed/throttled attempts by cause

    def slots(self) -> int:
        return max(1, int(self.window))


@dataclass(frozen=True)
class Lease:
    """A slot on one replica, held for one attempt."""

    replica: Replica
    epoch: int  # the replica's cut_epoch when the request was sent


class ReplicaPool:
    """Picks a replica for each attempt and learns from how the attempt ended."""

    def __init__(self, urls: list[str], *, max_window: int, breaker_failures: int, max_probes: int,
                 cooldown_s: float, max_cooldown_s: float, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = [Replica(u, float(max_window)) for u in urls]
        self.max_window = max_window
        self.breaker_failures = breaker_failures
        self.max_probes = max_probes
        self.cooldown_s, self.max_cooldown_s = cooldown_s, max_cooldown_s
        self.successes = 0  # over all replicas: lets a throttled request see progress
        self._rng = rng or random.Random()
        self._clock = clock
        self._turn = 0
        self._changed = asyncio.Event()

    # -- what the progress bar shows ----------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(r.in_flight for r in self.replicas)

    @property
    def live(self) -> int:
        return sum(r.state == "live" for r in self.replicas)

    def describe(self) -> str:
        """One line per replica: its state and last error (for failure messages)."""
        return "\n".join(f"  {r.url}: {r.state}" + (f", last error: {r.last_error}" if r.last_error else "")
                         for r in self.replicas)

    # -- picking --------------------------------------------------------------------------------
    def _usable(self, now: float) -> list[Replica]:
        out = []
        for r in self.replicas:
            if r.state == "live" and r.in_flight < r.slots():
                out.append(r)
            elif r.state == "out" and r.retry_at <= now and r.in_flight == 0:
                out.append(r)  # cooldown over: this attempt is the probe
            elif r.state == "dead" and r.retry_at <= now and r.in_flight == 0 and self.live:
                out.append(r)  # a rare probe of a dead replica while others carry the load
        return out

    async def acquire(self, avoid: str | None = None) -> Lease:
        """A slot on the least loaded usable replica (not ``avoid`` when another is usable)."""
        while True:
            now = self._clock()
            usable = self._usable(now)
            if usable:
                preferred = [r for r in usable if r.url != avoid] or usable
                n = len(self.replicas)
                self._turn += 1
                order = {r.url: i for i, r in enumerate(self.replicas)}
                replica = min(preferred, key=lambda r: (r.in_flight / r.slots(),
                                                        (order[r.url] - self._turn) % n))
                if replica.state in ("out", "dead"):
                    replica.state = "probing"
                replica.in_flight += 1
                return Lease(replica, replica.cut_epoch)
            if all(r.state == "dead" for r in self.replicas):
                raise NoReplicaLeft("every replica of the OpenAI-compatible server was taken out:\n"
                                    + self.describe())
            waits = [r.retry_at - now for r in self.replicas
                     if r.state == "out" or (r.state == "dead" and self.live)]
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, min(waits)) if waits else None)
            except TimeoutError:
                pass

    # -- learning -------------------------------------------------------------------------------
    def mark_down(self, url: str, error: str) -> None:
        """An endpoint that did not answer at start-up: out, to be probed after a cooldown."""
        replica = next(r for r in self.replicas if r.url == url)
        replica.last_error = error
        self._trip(replica, log_first=False)

    def release(self, lease: Lease, outcome: Outcome) -> None:
        """Return the slot and update the replica's health and window from ``outcome``."""
        r = lease.replica
        r.in_flight -= 1
        if outcome.kind == "cancelled":
            if r.state == "probing":
                r.state, r.retry_at = "out", self._clock()  # let another request probe it
            self._changed.set()
            return
        if outcome.kind != "ok" and outcome.cause:
            r.causes[outcome.cause] = r.causes.get(outcome.cause, 0) + 1
        if outcome.congestion and lease.epoch == r.cut_epoch:
            r.window = max(1.0, r.window / 2)
            r.cut_epoch += 1
        if outcome.kind == "failed":
            r.failures += 1
            r.last_error = outcome.error
            if r.state == "probing" or (r.state == "live" and r.failures >= self.breaker_failures):
                self._trip(r)
        else:  # any answer, even a 429 or a 4xx, shows the replica is up
            r.failures = 0
            if outcome.kind == "ok":
                r.successes += 1
                self.successes += 1
                r.window = min(float(self.max_window), r.window + 1.0 / r.window)
            if r.state in ("probing", "out"):
                log.info("%s answers again: back in service", r.url)
                r.state, r.trips = "live", 0
        self._changed.set()

    def _trip(self, r: Replica, log_first: bool = True) -> None:
        r.trips += 1
        if r.trips > self.max_probes:
            r.state, r.retry_at = "dead", self._clock() + self.max_cooldown_s
            if r.trips == self.max_probes + 1:
                log.error("%s given up after %d failed probes (last error: %s); probed again every "
                          "%.0f s while other replicas work", r.url, r.trips - 1, r.last_error,
                          self.max_cooldown_s)
            return
        cooldown = min(self.max_cooldown_s, self.cooldown_s * 2 ** (r.trips - 1))
        cooldown *= 0.5 + 0.5 * self._rng.random()  # spread the probes of several replicas
        r.state, r.retry_at = "out", self._clock() + cooldown
        if r.trips == 1 and log_first:
            log.warning("%s taken out after %d consecutive failures (last: %s); probing it again "
                        "in %.1f s", r.url, r.failures, r.last_error, cooldown)
        else:
            log.debug("%s still failing (%s); next probe in %.1f s", r.url, r.last_error, cooldown)
