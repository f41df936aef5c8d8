"""Typed configs of the auxiliary-caption stages (``caption_video``, ``caption_text``, ``clean_captions``);
the switch that feeds them to the model is ``features.auxiliary``
(:class:`pipeline.features.config.AuxiliaryInputs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.aux_captions.seq2seq import Seq2SeqConfig
from pipeline.tags.client import OpenAIConfig


def _check_common(section: str, num_captions: int, temperature: float) -> None:
    if not 1 <= num_captions <= 50:
        raise ValueError(f"{section}.num_captions must be in [1, 50], got {num_captions}")
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"{section}.temperature must be in [0, 2], got {temperature}")


@dataclass(frozen=True)
class OfflineCaptionerConfig:
    """The offline visual captioner: sentences from the pixel analysis of the offline visual
    tagger (thresholds in ``tag_video.offline``)."""

    facts_per_caption: int  # at most this many facts (motion, size, colour change, ...) per object
    background_prob: float  # chance, at T = 1, that a caption names the background
    second_object_prob: float  # chance that a caption of a two-object video names both

    def __post_init__(self) -> None:
        if self.facts_per_caption < 1:
            raise ValueError(f"caption_video.offline.facts_per_caption must be >= 1, got {self.facts_per_caption}")
        for name in ("background_prob", "second_object_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"caption_video.offline.{name} must be in [0, 1]")


@dataclass(frozen=True)
class CaptionVideoConfig:
    """Visual auxiliary captions of each video (Appx. G): a video LLM with the Appx. G prompt
    (``input: video``), or an image captioner on the middle frame (``input: middle_frame``: the
    BLIP-2 protocol the paper follows), over the same OpenAI-compatible client as the tags."""

    backend: Literal["offline", "openai"]
    input: Literal["video", "middle_frame"]
    prompt: str  # shipped prompt name or a .txt path (no {} placeholder: frames carry the input)
    video_input: Literal["video", "images"]  # input: video only (as tag_video.video_input)
    num_captions: int  # captions asked for (the prompt's "10"); the offline captioner writes this many
    temperature: float  # one sampling temperature (Appx. G generates one set per video)
    seed: int
    openai: OpenAIConfig
    offline: OfflineCaptionerConfig

    def __post_init__(self) -> None:
        _check_common("caption_video", self.num_captions, self.temperature)
        if self.input not in ("video", "middle_frame"):
            raise ValueError(f"caption_video.input must be video or middle_frame, got {self.input!r}")


@dataclass(frozen=True)
class OfflineParaphraserConfig:
    """The offline paraphraser: the caption with lexicon synonyms swapped in."""

    swap_prob: float  # chance, at T = 1, that a swappable word is replaced by a synonym

    def __post_init__(self) -> None:
        if not 0.0 < self.swap_prob <= 1.0:
            raise ValueError(f"caption_text.offline.swap_prob must be in (0, 1], got {self.swap_prob}")


@dataclass(frozen=True)
class CaptionTextConfig:
    """Textual auxiliary captions of each caption (Appx. G): paraphrases by an LLM with the
    Appx. G prompt (``openai``), by a local seq2seq paraphraser such as PEGASUS (``seq2seq``),
    or by the offline lexicon paraphraser."""

    backend: Literal["offline", "openai", "seq2seq"]
    prompt: str  # shipped prompt name or a .txt path, with a {} placeholder for the caption
    api: Literal["chat", "completions"]
    num_captions: int
    temperature: float
    seed: int
    openai: OpenAIConfig
    seq2seq: Seq2SeqConfig
    offline: OfflineParaphraserConfig

    def __post_init__(self) -> None:
        _check_common("caption_text", self.num_captions, self.temperature)


@dataclass(frozen=True)
class CleanCaptionsConfig:
    """Cleaning of the candidate sentences into each item's ordered caption list."""

    min_words: int
    max_words: int  # longer candidates are dropped (the text tower cuts at text.max_words tokens)
    drop_copies: bool  # drop a paraphrase equal to its own caption (ignoring case and punctuation)
    max_captions: int  # kept per item, in answer order

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"clean_captions: need 1 <= min_words <= max_words, got "
                             f"{self.min_words}, {self.max_words}")
        if self.max_captions < 1:
            raise ValueError(f"clean_captions.max_captions must be >= 1, got {self.max_captions}")
