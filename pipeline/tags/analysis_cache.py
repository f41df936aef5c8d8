"""Cache of the offline visual tagger's pixel analysis, shared by the tag_video@tNN stages.

The analysis of a video (background, tracked objects and what they do) does not depend on the
temperature; only the sampling of the answer does. The four temperature stages therefore
analyse each video once between them. The key hashes the video's JPEG frames and the tagger's
fingerprint (its knobs and lexicon), so any change of either misses; entries live in their own
table of the stages' answer cache file (SQLite, WAL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pipeline.tags.cache import CacheDB

_SCHEMA = "CREATE TABLE IF NOT EXISTS visual_analysis (key TEXT PRIMARY KEY, analysis TEXT NOT NULL)"


def analysis_key(jpegs: Sequence[bytes], fingerprint: str) -> str:
    h = hashlib.sha256(fingerprint.encode())
    for jpeg in jpegs:
        h.update(len(jpeg).to_bytes(8, "little"))
        h.update(jpeg)
    return h.hexdigest()


class AnalysisCache(CacheDB):
    """``with AnalysisCache(path) as c: c.get(key) / c.put(key, analysis_json)``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA, "the tag cache")

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT analysis FROM visual_analysis WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, analysis: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO visual_analysis (key, analysis) VALUES (?, ?)", (key, analysis))
