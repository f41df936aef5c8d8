"""Content-addressed answer cache (SQLite, WAL, one commit per answer), with each answer's verdict.

The key is the SHA-256 of everything that decides an answer: the model revision, the API path
and the full request body (model name, prompt + input, temperature, top_p, seed, max_tokens,
structured-output constraint). The endpoint is deliberately not part of it, so any replica may
answer. Each answer is committed on its own, so a stage killed at any point (``kill -9``
included) loses at most the requests that were in flight.

The cache keeps what the server said even when it was no tag list (empty, null, a refusal...):
useful for debugging, and never served as tags. Each row records the verdict it got when it was
stored (``pipeline.tags.parse.judge_answer``); readers re-judge with the current validator, so a
cache written by an older version (no verdict column: migrated in place on open) or an improved
validator never smuggles a bad answer through. ``null_content`` tells a JSON ``null`` answer
from an empty string.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    model TEXT NOT NULL,
    latency_s REAL NOT NULL,
    created REAL NOT NULL,
    null_content INTEGER NOT NULL DEFAULT 0,
    verdict TEXT
)
"""
# Columns added after the first release, with their definitions (for in-place migration).
_ADDED_COLUMNS = {"null_content": "INTEGER NOT NULL DEFAULT 0", "verdict": "TEXT"}


@dataclass(frozen=True)
class Answer:
    """A model answer as the server sent it (``response`` is None for JSON ``null`` content)."""

    response: str | None
    finish_reason: str
    model: str
    latency_s: float


@dataclass(frozen=True)
class Entry:
    """A stored answer and the verdict it got when stored (None: stored before verdicts)."""

    answer: Answer
    verdict: str | None


class CacheError(RuntimeError):
    """The cache file cannot be opened (corrupt, not a database)."""


def request_key(revision: str, path: str, body: dict[str, Any]) -> str:
    """Canonical hash of one request (JSON with sorted keys, no whitespace)."""
    canonical = json.dumps({"revision": revision, "path": path, "body": body}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def open_cache_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """An autocommit SQLite connection to ``path`` in WAL mode with ``schema`` applied.

    WAL: readers never block the writer, and a commit is durable against a killed process
    (synchronous=NORMAL only risks the last commits on power loss). A file that is not a
    database raises :class:`CacheError` naming ``what``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = None
    try:
        db = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(schema)
        return db
    except sqlite3.DatabaseError as err:
        if db is not None:
            db.close()
        raise CacheError(f"{path}: cannot open {what} ({err}); delete it to start over") from None


class CacheDB:
    """One SQLite cache file (:func:`open_cache_db`), closed on ``with`` exit."""

    def __init__(self, path: str | Path, schema: str, what: str) -> None:
        self.path = Path(path)
        self._db = open_cache_db(self.path, schema, what)

    def close(self) -> None:
        self._db.close()

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_C = TypeVar("_C", bound=CacheDB)


class AnswerCache(CacheDB):
    """``with AnswerCache(path) as cache: cache.get(key) / cache.put(key, answer, verdict)``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA, "the tag answer cache")
        try:
            self._migrate()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise CacheError(f"{self.path}: cannot open the tag answer cache ({err}); "
                               f"delete it to start over") from None

    def _migrate(self) -> None:
        """Add the columns older caches lack (in one write transaction: stages may share a cache)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            have = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE answers ADD COLUMN {name} {definition}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT response, finish_reason, model, latency_s, null_content, verdict FROM answers "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        response, finish, model, latency, null_content, verdict = row
        return Entry(Answer(None if null_content else response, finish, model, latency), verdict)

    def put(self, key: str, answer: Answer, verdict: str) -> None:
        """Store one answer with its verdict and commit it (autocommit: one transaction each)."""
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, response, finish_reason, model, latency_s, created, "
            "null_content, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, answer.response or "", answer.finish_reason, answer.model, answer.latency_s,
             time.time(), int(answer.response is None), verdict),
        )

    def set_verdict(self, key: str, verdict: str) -> None:
        """Record a re-judged verdict (for rows stored before verdicts, or by an older validator)."""
        self._db.execute("UPDATE answers SET verdict = ? WHERE key = ?", (verdict, key))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

