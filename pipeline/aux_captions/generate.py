"""Generate auxiliary captions: stages ``caption_video`` (visual) and ``caption_text`` (textual).

Both reuse the tag machinery end to end: the same OpenAI-compatible client, answer cache,
re-asks of bad answers, failure limit and raw-response Parquet (:mod:`pipeline.tags.raw`, one
row per item, ``candidates`` = the parsed sentences); only the judge differs
(:func:`pipeline.aux_captions.judge.judge_sentences`). One temperature per set (Appx. G asks
each model once for 10 captions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from pipeline.aux_captions.config import CaptionTextConfig, CaptionVideoConfig
from pipeline.aux_captions.judge import judge_sentences
from pipeline.aux_captions.offline_text import paraphrase_caption, synonym_groups
from pipeline.aux_captions.offline_video import caption_video as offline_caption_video
from pipeline.tags.bodies import Sampling, text_request, video_request
from pipeline.tags.common import answered_row, check_and_write, offline_fingerprint, offline_row, start_hint
from pipeline.tags.generate import TagRequest, generate_answers, iter_requests
from pipeline.tags.inputs import VideoFrames, count_videos, iter_video_frames, read_captions
from pipeline.tags.lexicon import load_lexicon
from pipeline.tags.offline_visual import OfflineVisualConfig, analyse_video, analysis_knobs
from pipeline.tags.prompts import load_prompt
from pipeline.tags.raw import RawRow, write_raw
from pipeline.tags.seeds import derive_seed

OFFLINE_CAPTIONER = "macvr-offline-captioner"
OFFLINE_PARAPHRASER = "macvr-offline-paraphraser"
SERVE_EXAMPLE_CAPTIONS = (
    "vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8001 --dtype bfloat16 --max-model-len 8192 "
    "--limit-mm-per-prompt '{\"video\": 1, \"image\": 1}' --generation-config vllm")
SERVE_EXAMPLE_PARAPHRASES = (
    "vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8000 --dtype bfloat16 "
    "--max-model-len 4096 --generation-config vllm")


def middle_frame(video: VideoFrames) -> VideoFrames:
    """The frame an image captioner sees: the middle one of the sampled VLM frames."""
    return VideoFrames(video.item_id, [video.jpegs[len(video.jpegs) // 2]])


def _video_inputs(frames_path: Path, cfg: CaptionVideoConfig) -> Iterator[VideoFrames]:
    for video in iter_video_frames(frames_path):
        yield middle_frame(video) if cfg.input == "middle_frame" else video


def _fingerprint(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# -- visual ---------------------------------------------------------------------------------------

def _video_openai_rows(frames_path: Path, cfg: CaptionVideoConfig, cache_path: Path) -> list[RawRow]:
    prompt = load_prompt(cfg.prompt)
    if prompt.has_placeholder:
        raise ValueError(f"{prompt.source}: a video prompt takes no {{}} placeholder")
    o, t = cfg.openai, cfg.temperature
    # One still frame goes as one image part; a clip as the tag stage sends it.
    media = "images" if cfg.input == "middle_frame" else cfg.video_input

    def requests() -> Iterator[TagRequest]:
        for video in _video_inputs(frames_path, cfg):
            seed = derive_seed(cfg.seed, video.item_id, t)
            sampling = Sampling(t, o.top_p, seed, o.max_tokens, o.structured_outputs)
            path, body = video_request(o.model, prompt, video.jpegs, sampling, media)
            yield TagRequest(video.item_id, seed, path, body)

    answered = generate_answers(iter_requests(requests()), o, cache_path, total=count_videos(frames_path),
                                start_hint=start_hint("caption_video", SERVE_EXAMPLE_CAPTIONS),
                                desc=f"caption_video ({cfg.input})", judge=judge_sentences)
    return [answered_row(a, t, o.model, o.revision, prompt.sha256, o.max_tags) for a in answered]


def _video_offline_rows(frames_path: Path, cfg: CaptionVideoConfig, analysis: OfflineVisualConfig) -> list[RawRow]:
    lexicon = load_lexicon(analysis.lexicon)
    still = cfg.input == "middle_frame"
    if still:  # one frame: every object is a one-frame track
        analysis = dataclasses.replace(analysis, min_track_frames=1)
    fingerprint = _fingerprint(captioner=dataclasses.asdict(cfg.offline), input=cfg.input,
                               num=cfg.num_captions,
                               analysis=offline_fingerprint(analysis_knobs(analysis), lexicon.sha256))
    rows = []
    for video in tqdm(_video_inputs(frames_path, cfg), total=count_videos(frames_path),
                      desc=f"caption_video offline ({cfg.input})", unit="video"):
        seed = derive_seed(cfg.seed, video.item_id, cfg.temperature)
        background, objects = analyse_video(video.jpegs, lexicon, analysis)
        text = offline_caption_video(background, objects, still, cfg.num_captions, cfg.temperature, seed,
                                     cfg.offline)
        rows.append(offline_row(video.item_id, cfg.temperature, seed, OFFLINE_CAPTIONER,
                                f"lexicon-{lexicon.sha256[:16]}", fingerprint, text, judge=judge_sentences))
    return rows


def caption_videos(cfg: CaptionVideoConfig, analysis: OfflineVisualConfig, frames_path: Path,
                   cache_path: Path, out_path: Path) -> list[RawRow]:
    """Visual auxiliary captions of every video of ``vlm_frames.parquet``; write the raw Parquet.

    ``analysis``: the offline visual tagger's pixel analysis (``tag_video.offline``), which the
    offline captioner reads the frames with. Raises ``TaggingFailed`` (writing nothing) when
    more videos failed than ``openai.max_failed_fraction`` allows.
    """
    if cfg.backend == "openai":
        rows = _video_openai_rows(frames_path, cfg, cache_path)
        limit, param = cfg.openai.max_failed_fraction, "caption_video.openai.max_failed_fraction"
    else:
        rows = _video_offline_rows(frames_path, cfg, analysis)
        limit, param = 0.0, "the offline captioner (no failure allowed)"
    check_and_write(rows, out_path, limit, "(visual captions)", param)
    return rows


# -- textual --------------------------------------------------------------------------------------

def _text_openai_rows(captions_path: Path, cfg: CaptionTextConfig, cache_path: Path) -> list[RawRow]:
    prompt = load_prompt(cfg.prompt)
    if not prompt.has_placeholder:
        raise ValueError(f"{prompt.source}: a paraphrase prompt needs a {{}} placeholder for the caption")
    captions = read_captions(captions_path)
    o, t = cfg.openai, cfg.temperature

    def requests() -> Iterator[TagRequest]:
        for caption in captions:
            seed = derive_seed(cfg.seed, caption.item_id, t)
            sampling = Sampling(t, o.top_p, seed, o.max_tokens, o.structured_outputs)
            path, body = text_request(o.model, prompt, caption.text, sampling, cfg.api)
            yield TagRequest(caption.item_id, seed, path, body)

    answered = generate_answers(iter_requests(requests()), o, cache_path, total=len(captions),
                                start_hint=start_hint("caption_text", SERVE_EXAMPLE_PARAPHRASES),
                                desc="caption_text", judge=judge_sentences)
    return [answered_row(a, t, o.model, o.revision, prompt.sha256, o.max_tags) for a in answered]


def _text_offline_rows(captions_path: Path, cfg: CaptionTextConfig) -> list[RawRow]:
    lexicon = load_lexicon("builtin")
    synonyms = synonym_groups(lexicon)
    fingerprint = _fingerprint(paraphraser=dataclasses.asdict(cfg.offline), num=cfg.num_captions,
                               lexicon=lexicon.sha256)
    rows = []
    for caption in tqdm(read_captions(captions_path), desc="caption_text offline", unit="caption"):
        seed = derive_seed(cfg.seed, caption.item_id, cfg.temperature)
        text = paraphrase_caption(caption.text, cfg.num_captions, cfg.temperature, seed, lexicon,
                                  cfg.offline, synonyms)
        rows.append(offline_row(caption.item_id, cfg.temperature, seed, OFFLINE_PARAPHRASER,
                                f"lexicon-{lexicon.sha256[:16]}", fingerprint, text, judge=judge_sentences))
    return rows


def _text_seq2seq_rows(captions_path: Path, cfg: CaptionTextConfig) -> list[RawRow]:
    from pipeline.aux_captions.seq2seq import model_fingerprint, paraphrase

    captions = read_captions(captions_path)
    seeds = [derive_seed(cfg.seed, c.item_id, cfg.temperature) for c in captions]
    answers = paraphrase([c.text for c in captions], cfg.seq2seq, cfg.num_captions, cfg.temperature, seeds)
    s = cfg.seq2seq
    fingerprint = _fingerprint(seq2seq=dataclasses.asdict(s), num=cfg.num_captions,
                               weights=model_fingerprint(s))
    return [offline_row(c.item_id, cfg.temperature, seed, s.model, s.revision, fingerprint, text,
                        judge=judge_sentences)
            for c, seed, text in zip(captions, seeds, answers)]


def caption_texts(cfg: CaptionTextConfig, captions_path: Path, cache_path: Path, out_path: Path) -> list[RawRow]:
    """Paraphrases of every caption of ``captions.parquet``; write the raw Parquet.

    Local generators (offline, seq2seq) are never re-asked: an unusable answer (the offline
    paraphraser finding no word to swap, a seq2seq model echoing garbage) leaves the item without
    captions, counted by ``clean_captions``. The server backend fails items as the tag stages do.
    """
    if cfg.backend == "openai":
        rows = _text_openai_rows(captions_path, cfg, cache_path)
        limit, param = cfg.openai.max_failed_fraction, "caption_text.openai.max_failed_fraction"
    elif cfg.backend == "seq2seq":
        rows = _text_seq2seq_rows(captions_path, cfg)
        limit, param = 1.0, "the seq2seq paraphraser"
    else:
        rows = _text_offline_rows(captions_path, cfg)
        limit, param = 1.0, "the offline paraphraser"
    check_and_write(rows, out_path, limit, "(paraphrases)", param)
    return rows


def write_placeholder(out_path: Path) -> None:
    """An empty raw file: the modality reads its tags, so no captions are generated."""
    write_raw([], out_path)
