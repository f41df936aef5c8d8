"""The offline taggers' concept lexicon and the shared stopword list (both shipped as data)."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).with_name("data")
BUILTIN_LEXICON = DATA_DIR / "lexicon.json"
BUILTIN_STOPWORDS = DATA_DIR / "stopwords_en.txt"


@dataclass(frozen=True)
class ConceptEntry:
    salience: float
    tags: tuple[str, ...]  # first = the most typical phrasing


@dataclass(frozen=True)
class Lexicon:
    """Parsed lexicon; ``sha256`` identifies its content (recorded as the offline 'revision')."""

    concepts: dict[str, ConceptEntry]
    templates: dict[str, ConceptEntry]
    fillers: tuple[str, ...]
    hues: tuple[tuple[float, float, str], ...]
    text_words: dict[tuple[str, ...], tuple[str, ...]]  # token sequence -> concept names
    sha256: str

    @property
    def max_phrase_len(self) -> int:
        return max((len(k) for k in self.text_words), default=1)


def resolve_data_path(name: str, builtin: Path) -> Path:
    """``builtin`` means the shipped file; anything else is a path."""
    path = builtin if name == "builtin" else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (use 'builtin' for the shipped file)")
    return path


def _entry(where: str, raw: object) -> ConceptEntry:
    if not isinstance(raw, dict) or set(raw) != {"salience", "tags"}:
        raise ValueError(f"{where}: expected {{'salience': number, 'tags': [...]}}")
    tags = raw["tags"]
    if not tags or not all(isinstance(t, str) and t.strip() for t in tags):
        raise ValueError(f"{where}: 'tags' must be a non-empty list of strings")
    return ConceptEntry(float(raw["salience"]), tuple(tags))


def parse_lexicon(data: dict, source: str, sha256: str) -> Lexicon:
    """Validate a lexicon mapping (every word must point at a defined concept)."""
    for key in ("concepts", "templates", "fillers", "hues", "text_words"):
        if key not in data:
            raise ValueError(f"{source}: missing key '{key}'")
    concepts = {name: _entry(f"{source}: concepts.{name}", v) for name, v in data["concepts"].items()}
    templates = {name: _entry(f"{source}: templates.{name}", v) for name, v in data["templates"].items()}
    for name in ("object", "background_colour"):
        if name not in templates:
            raise ValueError(f"{source}: templates.{name} is required")
    hues = []
    for lo, hi, colour in data["hues"]:
        if colour not in concepts or not 0 <= lo < hi <= 360:
            raise ValueError(f"{source}: bad hue range {[lo, hi, colour]} (colour must be a concept)")
        hues.append((float(lo), float(hi), colour))
    words: dict[tuple[str, ...], tuple[str, ...]] = {}
    for phrase, targets in data["text_words"].items():
        unknown = [t for t in targets if t not in concepts]
        if unknown:
            raise ValueError(f"{source}: text_words[{phrase!r}] names unknown concepts {unknown}")
        words[tuple(phrase.lower().split())] = tuple(targets)
    return Lexicon(concepts, templates, tuple(data["fillers"]), tuple(hues), words, sha256)


@functools.lru_cache(maxsize=8)
def load_lexicon(name: str = "builtin") -> Lexicon:
    path = resolve_data_path(name, BUILTIN_LEXICON)
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    return parse_lexicon(data, str(path), hashlib.sha256(raw).hexdigest())


@functools.lru_cache(maxsize=8)
def load_stopwords(name: str = "builtin") -> frozenset[str]:
    """One word per line; blank lines and ``#`` comments ignored."""
    path = resolve_data_path(name, BUILTIN_STOPWORDS)
    words = (line.split("#", 1)[0].strip().lower() for line in path.read_text().splitlines())
    return frozenset(w for w in words if w)
