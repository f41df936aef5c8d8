"""DiDeMo (LocalizingMoments), evaluated as video-paragraph retrieval (CLIP4Clip's protocol).

Each split file is a list of moments ``{"video", "description", "times", ...}``. A video's
caption is its descriptions in file order joined by " " (one caption per video); the moment
times are not used. Video ids are the json's ``video`` field verbatim; the file is found by that
name, or by stem whatever its extension (dumps mix .mp4/.avi/.mov/.m4v and re-encodes).
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
from pipeline.data.locate import strip_video_extension


@dataclass(frozen=True)
class DidemoConfig:
    """Paths (may be empty unless ``prepare.dataset`` is ``didemo``).

    train_json / test_json: ``train_data.json`` / ``test_data.json``.
    val_json: ``val_data.json``, or "" to leave out the val split (CLIP4Clip and DiCoSA report
        on test and never use val).
    video_dir: folder holding the videos.
    """

    train_json: str
    val_json: str
    test_json: str
    video_dir: str


def read_paragraphs(path) -> dict[str, str]:
    """video -> its descriptions joined in file order, from one LocalizingMoments json."""
    data = load_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of moments, got {type(data).__name__}")
    sentences: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "video" not in item or "description" not in item:
            raise DatasetError(f"{path}: item [{i}] lacks 'video' or 'description'")
        sentences.setdefault(str(item["video"]), []).append(str(item["description"]))
    out = {vid: paragraph(s) for vid, s in sentences.items()}
    empty = [vid for vid, text in out.items() if not text]
    if empty:
        raise DatasetError(f"{path}: only empty descriptions for video(s) {empty[:5]}")
    return out


def load_didemo(config: DidemoConfig) -> Annotations:
    """Read DiDeMo's split files and locate its video files."""
    files = {"train": config.train_json, "val": config.val_json, "test": config.test_json}
    per_split = {split: read_paragraphs(require_file(path, f"prepare.datasets.didemo.{split}_json"))
                 for split, path in files.items() if path or split != "val"}
    check_disjoint(per_split, "didemo")
    index = video_index(config.video_dir, "prepare.source.videos")
    videos, texts = [], {}
    for split, paragraphs in per_split.items():
        for vid, text in paragraphs.items():
            videos.append(locate(index, vid, split, [vid, strip_video_extension(vid)]))
            texts[vid] = [text]
    return Annotations("didemo", videos, texts)
