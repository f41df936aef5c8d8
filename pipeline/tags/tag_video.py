"""Visual tags for every video's VLM frames at one temperature (stage ``tag_video@tNN``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from pipeline.parallel import ordered_map
from pipeline.tags.analysis_cache import AnalysisCache, analysis_key
from pipeline.tags.bodies import Sampling, video_request
from pipeline.tags.client import OpenAIConfig
from pipeline.tags.common import (answered_row, check_and_write, offline_fingerprint, offline_row,
                                  start_hint)
from pipeline.tags.generate import TagRequest, generate_answers, iter_requests
from pipeline.tags.inputs import VideoFrames, count_videos, iter_video_frames
from pipeline.tags.lexicon import Lexicon, load_lexicon
from pipeline.tags.offline_visual import (OfflineVisualConfig, analyse_video, analysis_from_json,
                                          analysis_to_json, tag_analysis)
from pipeline.tags.prompts import PromptTemplate, load_prompt
from pipeline.tags.raw import RawRow
from pipeline.tags.seeds import check_temperature, derive_seed

OFFLINE_VISUAL_MODEL = "macvr-offline-visual"
SERVE_EXAMPLE_VIDEO = (
    "vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8001 --dtype bfloat16 --max-model-len 8192 "
    "--limit-mm-per-prompt '{\"video\": 1, \"image\": 0}' --generation-config vllm")


@dataclass(frozen=True)
class TagVideoConfig:
    backend: Literal["offline", "openai"]
    seed: int  # base seed; each request's seed derives from (seed, video_id, temperature)
    prompt: str  # shipped prompt name or a .txt path (no {} placeholder: frames carry the input)
    video_input: Literal["video", "images"]  # one video_url of all frames, or one image_url each
    require_even_frames: bool  # Qwen2/2.5-VL fold frame pairs: an odd count is refused up front
    workers: int  # offline tagger processes (the answers do not depend on it; openai: openai.concurrency)
    openai: OpenAIConfig
    offline: OfflineVisualConfig

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be in [1, 64], got {self.workers}")


def _checked(videos: Iterator[VideoFrames], cfg: TagVideoConfig) -> Iterator[VideoFrames]:
    for video in videos:
        if cfg.require_even_frames and cfg.video_input == "video" and len(video.jpegs) % 2:
            raise ValueError(f"video {video.item_id!r} has {len(video.jpegs)} frames; the model needs "
                             f"an even count (tag_video.require_even_frames)")
        yield video


def video_requests(videos: Iterator[VideoFrames], cfg: TagVideoConfig, prompt: PromptTemplate,
                   temperature: float) -> Iterator[TagRequest]:
    o = cfg.openai
    for video in _checked(videos, cfg):
        seed = derive_seed(cfg.seed, video.item_id, temperature)
        sampling = Sampling(temperature, o.top_p, seed, o.max_tokens, o.structured_outputs)
        path, body = video_request(o.model, prompt, video.jpegs, sampling, cfg.video_input)
        yield TagRequest(video.item_id, seed, path, body)


def _openai_rows(frames_path: Path, cfg: TagVideoConfig, temperature: float,
                 cache_path: Path) -> list[RawRow]:
    prompt = load_prompt(cfg.prompt)
    if prompt.has_placeholder:
        raise ValueError(f"{prompt.source}: a video prompt takes no {{}} placeholder")
    requests = video_requests(iter_video_frames(frames_path), cfg, prompt, temperature)
    answered = generate_answers(
        iter_requests(requests), cfg.openai, cache_path, total=count_videos(frames_path),
        start_hint=start_hint("tag_video", SERVE_EXAMPLE_VIDEO), desc=f"tag_video T={temperature:g}")
    o = cfg.openai
    return [answered_row(a, temperature, o.model, o.revision, prompt.sha256, o.max_tags)
            for a in answered]


_worker_state: tuple[Lexicon, OfflineVisualConfig] | None = None

# (video id, JPEG frames or () when the analysis is cached, temperature, seed, cached analysis)
_Job = tuple[str, tuple[bytes, ...], float, int, str | None]


def _init_offline_worker(lexicon: Lexicon, cfg: OfflineVisualConfig) -> None:
    global _worker_state
    _worker_state = (lexicon, cfg)


def _tag_offline(job: _Job) -> tuple[str, int, str, str | None]:
    """(video id, seed, answer, the analysis if computed here) for one video, in a worker process
    (or in-process): the pixel analysis unless cached, then the temperature's sampling."""
    item_id, jpegs, temperature, seed, cached = job
    if _worker_state is None:
        raise RuntimeError("offline visual tagger: worker not initialised")
    lexicon, cfg = _worker_state
    if cached is None:
        background, objects = analyse_video(jpegs, lexicon, cfg)
        computed: str | None = analysis_to_json(background, objects)
    else:
        (background, objects), computed = analysis_from_json(cached), None
    return item_id, seed, tag_analysis(background, objects, temperature, seed, lexicon, cfg), computed


def _offline_jobs(frames_path: Path, cfg: TagVideoConfig, temperature: float, cache: AnalysisCache,
                  fingerprint: str, keys: dict[str, str]) -> Iterator[_Job]:
    for video in iter_video_frames(frames_path):
        if video.item_id in keys:
            raise ValueError(f"{frames_path}: video {video.item_id!r} appears twice")
        keys[video.item_id] = key = analysis_key(video.jpegs, fingerprint)
        cached = cache.get(key)
        yield (video.item_id, () if cached is not None else tuple(video.jpegs), temperature,
               derive_seed(cfg.seed, video.item_id, temperature), cached)


def _offline_rows(frames_path: Path, cfg: TagVideoConfig, temperature: float,
                  cache_path: Path) -> list[RawRow]:
    """The pixel tagger over every video on ``cfg.workers`` processes (the same rows for any count).

    Each video's pixel analysis is cached in ``cache_path`` (it does not depend on the
    temperature), so the other temperatures' stages only sample.
    """
    lexicon = load_lexicon(cfg.offline.lexicon)
    fingerprint = offline_fingerprint(cfg.offline, lexicon.sha256)
    rows, keys = [], {}
    with AnalysisCache(cache_path) as cache, contextlib.ExitStack() as stack:
        jobs = _offline_jobs(frames_path, cfg, temperature, cache, fingerprint, keys)
        if cfg.workers == 1:  # in-process: no pool start-up
            _init_offline_worker(lexicon, cfg.offline)
            answers: Iterator[tuple[str, int, str, str | None]] = map(_tag_offline, jobs)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(
                cfg.workers, initializer=_init_offline_worker, initargs=(lexicon, cfg.offline)))
            answers = ordered_map(_tag_offline, jobs, pool, 4 * cfg.workers)
        progress = tqdm(answers, total=count_videos(frames_path),
                        desc=f"tag_video offline T={temperature:g}", unit="video")
        for item_id, seed, text, computed in progress:
            if computed is not None:
                cache.put(keys[item_id], computed)
            rows.append(offline_row(item_id, temperature, seed, OFFLINE_VISUAL_MODEL,
                                    f"lexicon-{lexicon.sha256[:16]}", fingerprint, text))
    return rows


def tag_video(cfg: TagVideoConfig, frames_path: Path, temperature: float, cache_path: Path,
              out_path: Path) -> list[RawRow]:
    """Tag every video of ``vlm_frames.parquet`` at ``temperature``; write the raw Parquet.

    Raises ``TaggingFailed`` (writing nothing) when more videos failed than
    ``openai.max_failed_fraction`` allows; the offline tagger allows none.
    """
    temperature = check_temperature(temperature)
    if cfg.backend == "openai":
        rows = _openai_rows(frames_path, cfg, temperature, cache_path)
        limit, param = cfg.openai.max_failed_fraction, "tag_video.openai.max_failed_fraction"
    else:
        rows = _offline_rows(frames_path, cfg, temperature, cache_path)
        limit, param = 0.0, "the offline tagger (no failure allowed)"
    check_and_write(rows, out_path, limit, f"at T={temperature:g}", param)
    return rows
