"""Offline paraphraser: a caption with synonyms from the concept lexicon swapped in.

Words the lexicon maps to the same concepts ("slides", "drifts", "glides" -> motion; "red",
"crimson" -> red) are synonyms; a swap keeps the word's inflection class (-s, -ing, -ed, bare)
so "slides left" may become "glides west" but never "gliding west". Like a paraphrasing LLM,
the output keeps the caption's facts and adds none, which is what Tab. 7 tests: a paraphrase
restates what the caption already says. Function words (counts, sequence, speed) stay.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from pipeline.aux_captions.config import OfflineParaphraserConfig
from pipeline.aux_captions.judge import fix_articles
from pipeline.tags.lexicon import Lexicon
from pipeline.tags.sampling import bullet_list

KEEP_CONCEPTS = {"multiple objects", "sequence", "speed"}  # words that structure, not describe
_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")
MAX_TRIES = 20


def _inflection(word: str) -> str:
    for suffix in ("wards", "ward", "ing", "ed", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return suffix
    return ""


def synonym_groups(lexicon: Lexicon) -> dict[str, tuple[str, ...]]:
    """word -> its swappable synonyms (same concepts, same inflection class, one word each)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for words, concepts in lexicon.text_words.items():
        if len(words) == 1 and not KEEP_CONCEPTS & set(concepts):
            groups[(tuple(concepts), _inflection(words[0]))].append(words[0])
    return {w: tuple(x for x in group if x != w) for group in groups.values() if len(group) > 1
            for w in group}


def paraphrase_once(caption: str, synonyms: dict[str, tuple[str, ...]], swap: float,
                    rng: np.random.Generator) -> str:
    """One paraphrase: each swappable word replaced with probability ``swap``."""
    out = []
    for token in _TOKEN.findall(caption):
        options = synonyms.get(token.lower())
        if options and rng.random() < swap:
            token = options[int(rng.integers(0, len(options)))]
        out.append(token)
    return "".join(out)


def paraphrase_caption(caption: str, num: int, temperature: float, seed: int, lexicon: Lexicon,
                       cfg: OfflineParaphraserConfig,
                       synonyms: dict[str, tuple[str, ...]] | None = None) -> str:
    """A bullet-list answer of up to ``num`` distinct paraphrases other than the caption itself."""
    synonyms = synonym_groups(lexicon) if synonyms is None else synonyms
    swap = min(1.0, cfg.swap_prob * max(temperature, 0.1))
    rng = np.random.default_rng(seed)
    seen = {caption.strip().lower()}
    out: list[str] = []
    for _ in range(MAX_TRIES * num):
        text = fix_articles(paraphrase_once(caption, synonyms, swap, rng).strip())
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
        if len(out) == num:
            break
    return bullet_list(out) if out else ""
