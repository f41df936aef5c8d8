"""Textual tags for every caption at one temperature (stage ``tag_text@tNN``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from pipeline.tags.bodies import Sampling, text_request
from pipeline.tags.client import OpenAIConfig
from pipeline.tags.common import (answered_row, check_and_write, offline_fingerprint, offline_row,
                                  start_hint)
from pipeline.tags.generate import TagRequest, generate_answers, iter_requests
from pipeline.tags.inputs import Caption, read_captions
from pipeline.tags.lexicon import load_lexicon, load_stopwords
from pipeline.tags.offline_text import OfflineTextConfig, tag_caption
from pipeline.tags.prompts import PromptTemplate, load_prompt
from pipeline.tags.raw import RawRow
from pipeline.tags.seeds import check_temperature, derive_seed

OFFLINE_TEXT_MODEL = "macvr-offline-text"
SERVE_EXAMPLE_TEXT = (
    "vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8000 --dtype bfloat16 "
    "--max-model-len 4096 --generation-config vllm")


@dataclass(frozen=True)
class TagTextConfig:
    backend: Literal["offline", "openai"]
    seed: int  # base seed; each request's seed derives from (seed, caption_id, temperature)
    prompt: str  # shipped prompt name (pipeline/tags/data/prompts/<name>.txt) or a .txt path
    api: Literal["chat", "completions"]  # chat messages, or the paper's raw template
    openai: OpenAIConfig
    offline: OfflineTextConfig


def text_requests(captions: Sequence[Caption], cfg: TagTextConfig, prompt: PromptTemplate,
                  temperature: float) -> Iterator[TagRequest]:
    o = cfg.openai
    for caption in captions:
        seed = derive_seed(cfg.seed, caption.item_id, temperature)
        sampling = Sampling(temperature, o.top_p, seed, o.max_tokens, o.structured_outputs)
        path, body = text_request(o.model, prompt, caption.text, sampling, cfg.api)
        yield TagRequest(caption.item_id, seed, path, body)


def _openai_rows(captions: Sequence[Caption], cfg: TagTextConfig, temperature: float,
                 cache_path: Path) -> list[RawRow]:
    prompt = load_prompt(cfg.prompt)
    if not prompt.has_placeholder:
        raise ValueError(f"{prompt.source}: a text prompt needs a {{}} placeholder for the caption")
    answered = generate_answers(
        iter_requests(text_requests(captions, cfg, prompt, temperature)), cfg.openai, cache_path,
        total=len(captions), start_hint=start_hint("tag_text", SERVE_EXAMPLE_TEXT),
        desc=f"tag_text T={temperature:g}")
    o = cfg.openai
    return [answered_row(a, temperature, o.model, o.revision, prompt.sha256, o.max_tags)
            for a in answered]


def _offline_rows(captions: Sequence[Caption], cfg: TagTextConfig, temperature: float) -> list[RawRow]:
    lexicon = load_lexicon(cfg.offline.lexicon)
    stopwords = load_stopwords()
    fingerprint = offline_fingerprint(cfg.offline, lexicon.sha256)
    rows = []
    for caption in tqdm(captions, desc=f"tag_text offline T={temperature:g}", unit="caption"):
        seed = derive_seed(cfg.seed, caption.item_id, temperature)
        text = tag_caption(caption.text, temperature, seed, lexicon, stopwords, cfg.offline)
        rows.append(offline_row(caption.item_id, temperature, seed, OFFLINE_TEXT_MODEL,
                                f"lexicon-{lexicon.sha256[:16]}", fingerprint, text))
    return rows


def tag_text(cfg: TagTextConfig, captions_path: Path, temperature: float, cache_path: Path,
             out_path: Path) -> list[RawRow]:
    """Tag every caption of ``captions_path`` at ``temperature``; write the raw Parquet.

    Raises ``TaggingFailed`` (writing nothing) when more captions failed than
    ``openai.max_failed_fraction`` allows; the offline tagger allows none.
    """
    temperature = check_temperature(temperature)
    captions = read_captions(captions_path)
    if cfg.backend == "openai":
        rows = _openai_rows(captions, cfg, temperature, cache_path)
        limit, param = cfg.openai.max_failed_fraction, "tag_text.openai.max_failed_fraction"
    else:
        rows = _offline_rows(captions, cfg, temperature)
        limit, param = 0.0, "the offline tagger (no failure allowed)"
    check_and_write(rows, out_path, limit, f"at T={temperature:g}", param)
    return rows
