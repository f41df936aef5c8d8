"""The paper's tag-cleaning rules (Appx. C), applied to parsed candidate tags.

In order: lowercase; strip punctuation (a hyphen inside a word stays: "self-care"; apostrophes
split: "user's" -> "user s"); drop stopword tokens; drop tags left empty, purely numeric or
shorter than ``min_chars``; drop tags of more than ``max_words`` words (counted after stopword
removal, so "the art of cooking" -> "art cooking" survives); drop tags holding both a noun and
a verb (the paper: "to avoid the presence of complete sentences as tags"), decided by a real
POS tagger on the cleaned tag; then de-duplicate keeping the first occurrence.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^\w\s-]|_")
_LOOSE_HYPHEN = re.compile(r"(?<!\w)-+|-+(?!\w)")
_SPACES = re.compile(r"\s+")

DROP_REASONS = ("empty", "too_long", "noun_verb", "duplicate")


@dataclass(frozen=True)
class CleanConfig:
    max_words: int  # the paper drops tags "larger than 3 words"
    min_chars: int  # shorter tags (e.g. a stray letter) are dropped
    drop_noun_verb: bool  # the paper's sentence filter
    noun_pos: list[str]  # universal POS tags counted as nouns
    verb_pos: list[str]  # ... as verbs (AUX deliberately not: "is" alone is no sentence)
    pos_model: str  # installed spaCy pipeline with a tagger
    stopwords: str  # "builtin" (pipeline/tags/data/stopwords_en.txt) or a path

    def __post_init__(self) -> None:
        if self.max_words < 1 or self.min_chars < 1:
            raise ValueError("max_words and min_chars must be >= 1")
        if self.drop_noun_verb and (not self.noun_pos or not self.verb_pos):
            raise ValueError("drop_noun_verb needs non-empty noun_pos and verb_pos")


def normalise(tag: str, stopwords: frozenset[str]) -> str:
    """Lowercase, strip punctuation and stopword tokens; '' when nothing is left."""
    text = unicodedata.normalize("NFKC", tag).lower().replace("’", "'").replace("'", " ")
    text = _LOOSE_HYPHEN.sub(" ", _NON_WORD.sub(" ", text))
    tokens = [t for t in _SPACES.split(text.strip()) if t and t not in stopwords]
    return " ".join(tokens)


PosFn = Callable[[Sequence[str]], list[list[str]]]


class TagCleaner:
    """Cleans candidate tags; POS results are memoised per distinct tag string."""

    def __init__(self, cfg: CleanConfig, stopwords: frozenset[str], pos: PosFn | None) -> None:
        if cfg.drop_noun_verb and pos is None:
            raise ValueError("drop_noun_verb is on but no POS tagger was given")
        self.cfg, self.stopwords, self.pos = cfg, stopwords, pos
        self._nouns, self._verbs = set(cfg.noun_pos), set(cfg.verb_pos)
        self._sentence: dict[str, bool] = {}
        self.dropped: Counter[str] = Counter()

    def prime(self, tags: Iterable[str]) -> None:
        """POS-tag many normalised tags in one batch (much faster than one by one)."""
        if not self.cfg.drop_noun_verb:
            return
        todo = sorted({t for t in tags if t and t not in self._sentence})
        for tag, pos in zip(todo, self.pos(todo) if todo else []):
            self._sentence[tag] = bool(self._nouns & set(pos)) and bool(self._verbs & set(pos))

    def is_sentence(self, tag: str) -> bool:
        if tag not in self._sentence:
            self.prime([tag])
        return self._sentence[tag]

    def _keep(self, tag: str) -> str | None:
        if not tag or tag.replace(" ", "").isdigit() or len(tag) < self.cfg.min_chars:
            return "empty"
        if len(tag.split()) > self.cfg.max_words:
            return "too_long"
        if self.cfg.drop_noun_verb and self.is_sentence(tag):
            return "noun_verb"
        return None

    def clean(self, items: Iterable[str]) -> list[str]:
        """Cleaned, de-duplicated tags of one answer (or of several, merged in order)."""
        out: list[str] = []
        seen: set[str] = set()
        for item in items:
            tag = normalise(item, self.stopwords)
            reason = self._keep(tag)
            if reason is None and tag in seen:
                reason = "duplicate"
            if reason:
                self.dropped[reason] += 1
                continue
            seen.add(tag)
            out.append(tag)
        return out


def merge_ordered(lists: Iterable[Sequence[str]]) -> list[str]:
    """Concatenate tag lists (temperature order) keeping each tag's first occurrence."""
    return list(dict.fromkeys(t for tags in lists for t in tags))
