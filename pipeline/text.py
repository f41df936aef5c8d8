"""How every text is tokenised (``params.yaml: text``), in one place for every stage.

Captions, tag sentences and search queries are all cut to ``max_words`` tokens, start and end
tokens included, as the official MAC-VR loader does (32 for MSR-VTT, 64 for the paragraph
datasets DiDeMo and ActivityNet). The features stage, fine-tuning, evaluation re-encoding,
``macvr search`` and the tiny backbone's context all read this one value; the concept loss
uses it as its normaliser L.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextConfig:
    """max_words: tokens per text, start and end included (>= 3)."""

    max_words: int

    def __post_init__(self) -> None:
        if self.max_words < 3:
            raise ValueError(f"text.max_words must be >= 3 (start, a token, end), got {self.max_words}")
