"""ActivityNet Captions, video-paragraph retrieval on ``val_1`` (CLIP4Clip/DiCoSA protocol).

``train.json`` and ``val_1.json`` map a video id (``v_<youtube id>``) to ``{"duration",
"timestamps", "sentences"}``. A video's caption is its sentences, each stripped, joined by " ".
Files are ``<video_dir>/<id>.<mp4|mkv|webm|...>``, named with or without the ``v_`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.data.common import (
    Annotations,
    DatasetError,
    check_disjoint,
    load_json,
    locate,
    paragraph,
    require_file,
    video_index,
)


@dataclass(frozen=True)
class ActivityNetConfig:
    """Paths (may be empty unless ``prepare.dataset`` is ``activitynet``).

    train_json: ``train.json``; test_json: ``val_1.json`` (the test split, as in the paper).
    video_dir: folder holding the videos.
    """

    train_json: str
    test_json: str
    video_dir: str


def read_paragraphs(path) -> dict[str, str]:
    """video id -> its paragraph, from one ActivityNet Captions json (file order kept)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object mapping video ids, got {type(data).__name__}")
    out = {}
    for vid, item in data.items():
        sentences = item.get("sentences") if isinstance(item, dict) else None
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise DatasetError(f"{path}: {vid!r} lacks a 'sentences' list of strings")
        out[vid] = paragraph(sentences)
        if not out[vid]:
            raise DatasetError(f"{path}: {vid!r} has only empty sentences")
    return out


def file_candidates(video_id: str) -> list[str]:
    """File stems to try: the id as given, then with the ``v_`` prefix dropped or added."""
    alias = video_id[2:] if video_id.startswith("v_") else f"v_{video_id}"
    return [video_id, alias]


def load_activitynet(config: ActivityNetConfig) -> Annotations:
    """Read ActivityNet Captions' train and val_1 files and locate the video files."""
    per_split = {
        "train": read_paragraphs(require_file(config.train_json, "prepare.datasets.activitynet.train_json")),
        "test": read_paragraphs(require_file(config.test_json, "prepare.datasets.activitynet.test_json")),
    }
    check_disjoint(per_split, "activitynet")
    index = video_index(config.video_dir, "prepare.source.videos")
    videos, texts = [], {}
    for split, paragraphs in per_split.items():
        for vid, text in paragraphs.items():
            videos.append(locate(index, vid, split, file_candidates(vid)))
            texts[vid] = [text]
    return Annotations("activitynet", videos, texts)
