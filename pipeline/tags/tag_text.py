"""Textual tags for every caption at one temperature (stage ``tag_text@tNN``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from pipeline.tags.bodies import Sampling, text_request
from pipeline.tags.client import OpenAIConfig
from pipeline.tags.common import offline_fingerprint, start_hint
from pipeline.tags.generate import TagRequest, count_misses, generate_answers, iter_requests
from pipeline.tags.inputs import Caption, read_captions
from pipeline.tags.lexicon import load_lexicon, load_stopwords
from pipeline.tags.offline_text import OfflineTextConfig, tag_caption
from pipeline.tags.prompts import PromptTemplate, load_prompt
from pipeline.tags.raw import RawRow, write_raw
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
    print(f"tag_text: {len(answered)} answers, {count_misses(answered)} asked of the server")
    return [RawRow(a.item_id, temperature, a.seed, a.answer.model, cfg.openai.revision,
                   prompt.sha256, a.answer.response, a.answer.finish_reason, a.answer.latency_s)
            for a in answered]


def _offline_rows(captions: Sequence[Caption], cfg: TagTextConfig, temperature: float) -> list[RawRow]:
    lexicon = load_lexicon(cfg.offline.lexicon)
    stopwords = load_stopwords()
    fingerprint = offline_fingerprint(cfg.offline, lexicon.sha256)
    rows = []
    for caption in tqdm(captions, desc=f"tag_text offline T={temperature:g}", unit="caption"):
        seed = derive_seed(cfg.seed, caption.item_id, temperature)
        start = time.perf_counter()
        text = tag_caption(caption.text, temperature, seed, lexicon, stopwords, cfg.offline)
        rows.append(RawRow(caption.item_id, temperature, seed, OFFLINE_TEXT_MODEL,
                           f"lexicon-{lexicon.sha256[:16]}", fingerprint, text, "stop",
                           time.perf_counter() - start))
    return rows


def tag_text(cfg: TagTextConfig, captions_path: Path, temperature: float, cache_path: Path,
             out_path: Path) -> list[RawRow]:
    """Tag every caption of ``captions_path`` at ``temperature``; write the raw Parquet."""
    temperature = check_temperature(temperature)
    captions = read_captions(captions_path)
    if cfg.backend == "openai":
        rows = _openai_rows(captions, cfg, temperature, cache_path)
    else:
        rows = _offline_rows(captions, cfg, temperature)
    write_raw(rows, out_path)
    return rows
