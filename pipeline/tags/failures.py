"""Per-item failures of a tag stage: counted by reason, summarised, and held against the limit.

A failed item never stops the others: the stage asks everything it can, then fails with one
paragraph (counts by reason, the first few items) unless failed / all items is at most
``max_failed_fraction``. Allowed failures are written to the raw file with their reason, get no
tags in ``clean_tags`` and are counted in ``metrics/tags.json``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

EXAMPLES = 5  # failed items named in a summary

# What to do about each reason (shown once per summary).
_HINTS = {
    "length": "raise openai.max_tokens (answers were cut)",
    "http_4xx": "the server refused these requests as malformed: check model/prompt/max_tokens",
    "retries_exhausted": "the server kept failing: see the warnings above",
    "refusal": "the model refused: check the prompt or these inputs",
}


class TaggingFailed(RuntimeError):
    """More items failed than ``max_failed_fraction`` allows; the message is the summary."""


@dataclass(frozen=True)
class FailedItem:
    item_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class FailureSummary:
    total: int
    counts: dict[str, int]  # failed items by reason, most frequent first
    examples: list[FailedItem]  # the first few, in input order

    @property
    def failed(self) -> int:
        return sum(self.counts.values())

    def text(self, where: str) -> str:
        """One paragraph, e.g. 'at T=0.7, 3 of 200 items failed (refusal 2, http_4xx 1): ...'."""
        reasons = ", ".join(f"{r} {n}" for r, n in self.counts.items())
        shown = "; ".join(f"{e.item_id!r} ({e.reason}: {e.detail})" for e in self.examples)
        more = f" and {self.failed - len(self.examples)} more" if self.failed > len(self.examples) else ""
        hints = "; ".join(_HINTS[r] for r in self.counts if r in _HINTS)
        return (f"{where}, {self.failed} of {self.total} items failed ({reasons}): {shown}{more}."
                + (f" Hint: {hints}." if hints else ""))


def summarise_failures(failed: Iterable[FailedItem], total: int) -> FailureSummary:
    items = list(failed)
    counts = dict(Counter(i.reason for i in items).most_common())
    return FailureSummary(total, counts, items[:EXAMPLES])


def enforce_failure_limit(summary: FailureSummary, max_failed_fraction: float, where: str,
                          param: str) -> None:
    """Raise :class:`TaggingFailed` when too many items failed; log allowed failures once."""
    if not summary.failed:
        return
    allowed = summary.failed <= max_failed_fraction * summary.total + 1e-9
    text = summary.text(where)
    if not allowed:
        raise TaggingFailed(
            f"{text} That is more than {param} = {max_failed_fraction:g} allows, so no output was "
            f"written. Every answer is cached: a rerun re-asks only the failed items; or raise "
            f"{param} to go on without them (they then get no tags).")
    log.warning("%s Allowed by %s = %g: these items get no tags.", text, param, max_failed_fraction)
