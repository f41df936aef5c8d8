"""Content-addressed answer cache (SQLite, WAL, one commit per answer).

The key is the SHA-256 of everything that decides an answer: the model revision, the API path
and the full request body (model name, prompt + input, temperature, top_p, seed, max_tokens,
structured-output constraint). The endpoint is deliberately not part of it, so any replica may
answer. Each answer is committed on its own, so a stage killed at any point (``kill -9``
included) loses at most the requests that were in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    model TEXT NOT NULL,
    latency_s REAL NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Answer:
    """A cached model answer."""

    response: str
    finish_reason: str
    model: str
    latency_s: float


def request_key(revision: str, path: str, body: dict[str, Any]) -> str:
    """Canonical hash of one request (JSON with sorted keys, no whitespace)."""
    canonical = json.dumps({"revision": revision, "path": path, "body": body}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AnswerCache:
    """``with AnswerCache(path) as cache: cache.get(key) / cache.put(key, answer)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            # WAL: readers never block the writer, and a commit is durable against a killed
            # process (synchronous=NORMAL only risks the last commits on power loss).
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise RuntimeError(f"{self.path}: cannot open the tag answer cache ({err}); "
                               f"delete it to start over") from None

    def get(self, key: str) -> Answer | None:
        row = self._db.execute(
            "SELECT response, finish_reason, model, latency_s FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return Answer(*row) if row else None

    def put(self, key: str, answer: Answer) -> None:
        """Store one answer and commit it (autocommit mode: one transaction per statement)."""
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
            (key, answer.response, answer.finish_reason, answer.model, answer.latency_s,
             time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
