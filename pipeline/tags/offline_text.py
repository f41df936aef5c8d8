"""Offline textual tagger: general tags from a caption's own words, via the concept lexicon.

Caption words and short phrases ("slides", "gets bigger", "changes colour") map to general
concepts ("motion", "growth", "colour change"); colour and shape words also bring their general
concept ("colour", "geometry"). Content words the lexicon does not know become low-salience tags
of their own, as an LLM tends to echo a caption's nouns. Only the caption text is read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.tags.lexicon import Lexicon
from pipeline.tags.sampling import Concept, SamplingConfig, bullet_list, sample_tags

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class OfflineTextConfig:
    lexicon: str  # "builtin" or a path to a lexicon JSON
    mention_bonus: float  # salience added per repeated mention of a concept
    unknown_word_salience: float  # salience of caption words the lexicon does not know
    min_word_chars: int  # shorter unknown words are ignored
    sampling: SamplingConfig

    def __post_init__(self) -> None:
        if self.mention_bonus < 0:
            raise ValueError(f"mention_bonus must be >= 0, got {self.mention_bonus}")
        if self.min_word_chars < 1:
            raise ValueError(f"min_word_chars must be >= 1, got {self.min_word_chars}")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'").replace("'", " "))


def match_concepts(tokens: list[str], lexicon: Lexicon) -> tuple[list[str], list[str]]:
    """(concept names in order of mention, unmatched tokens); longest phrase match wins."""
    concepts: list[str] = []
    unmatched: list[str] = []
    i, longest = 0, lexicon.max_phrase_len
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            targets = lexicon.text_words.get(tuple(tokens[i:i + n]))
            if targets:
                concepts.extend(targets)
                i += n
                break
        else:
            unmatched.append(tokens[i])
            i += 1
    return concepts, unmatched


def caption_concepts(text: str, lexicon: Lexicon, stopwords: frozenset[str],
                     cfg: OfflineTextConfig) -> list[Concept]:
    """Scored concepts of one caption, in order of first mention."""
    names, unmatched = match_concepts(tokenize(text), lexicon)
    counts = Counter(names)
    out = []
    for name in dict.fromkeys(names):
        entry = lexicon.concepts[name]
        out.append(Concept(name, entry.salience + cfg.mention_bonus * (counts[name] - 1), entry.tags))
    for word in dict.fromkeys(unmatched):
        if word not in stopwords and len(word) >= cfg.min_word_chars:
            out.append(Concept(f"word:{word}", cfg.unknown_word_salience, (word,)))
    return out


def tag_caption(text: str, temperature: float, seed: int, lexicon: Lexicon,
                stopwords: frozenset[str], cfg: OfflineTextConfig) -> str:
    """A bullet-list answer for one caption (same form as an LLM's)."""
    rng = np.random.default_rng(seed)
    concepts = caption_concepts(text, lexicon, stopwords, cfg)
    return bullet_list(sample_tags(concepts, lexicon.fillers, temperature, rng, cfg.sampling))
