"""The tag stages' progress bar: items done/failed, retries waiting, requests in flight, replicas.

Why: during a retry storm no item completes, so a plain bar just stalls; the postfix shows
what the client is doing (refreshed on a timer, not only when an item finishes).
"""

from __future__ import annotations

from typing import Protocol

from tqdm import tqdm


class ClientView(Protocol):
    """What the bar reads from a live client (``pipeline.tags.client.OpenAIClient``)."""

    retrying: int

    @property
    def pool(self) -> PoolView: ...


class PoolView(Protocol):
    in_flight: int
    live: int
    replicas: list


class TagProgress:
    """``progress.item(ok)`` per finished item; ``progress.show(client)`` to refresh the postfix."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True)
        self.ok = self.failed = self.cached = self.reasked = 0

    def item(self, ok: bool, cached: bool = False) -> None:
        self.ok += ok
        self.failed += not ok
        self.cached += cached
        self.bar.update(1)

    def reask(self) -> None:
        self.reasked += 1

    def postfix(self, client: ClientView | None) -> str:
        parts = [f"ok={self.ok}", f"failed={self.failed}", f"reasked={self.reasked}"]
        if client is not None:
            pool = client.pool
            parts += [f"retrying={client.retrying}", f"in_flight={pool.in_flight}",
                      f"replicas={pool.live}/{len(pool.replicas)}"]
        return " ".join(parts)

    def show(self, client: ClientView | None) -> None:
        self.bar.set_postfix_str(self.postfix(client), refresh=True)

    def close(self) -> None:
        self.bar.close()
