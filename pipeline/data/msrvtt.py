"""MSR-VTT, 9k-train / 1k-A test split (JSFusion), as used by CLIP4Clip, DiCoSA and MAC-VR.

Training: the videos of the 9k list with all their captions (20 each) from ``MSRVTT_data.json``,
in ``sen_id`` order. Test: the 1,000 videos of ``MSRVTT_JSFUSION_test.csv`` with the single
sentence that csv gives each. Video files: ``<video_dir>/<video_id>.<ext>`` (any sub-folder).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.common import (
    Annotations,
    DatasetError,
    check_disjoint,
    load_json,
    locate,
    not_utf8,
    require_file,
    video_index,
)


@dataclass(frozen=True)
class MsrvttConfig:
    """Paths (may be empty unless ``prepare.dataset`` is ``msrvtt``).

    data_json: ``MSRVTT_data.json`` (keys ``videos`` and ``sentences``).
    train_list: the 9k training ids: ``train_list_jsfusion.txt`` (one id a line) or
        ``MSRVTT_train.9k.csv`` (a ``video_id`` column) — told apart by the ``.csv`` suffix.
    test_csv: ``MSRVTT_JSFUSION_test.csv`` (columns key, vid_key, video_id, sentence).
    video_dir: folder holding ``video<N>.mp4``.
    """

    data_json: str
    train_list: str
    test_csv: str
    video_dir: str


def _read_csv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
            return [{c: (row[c] or "").strip() for c in columns} for row in reader]
    except UnicodeDecodeError as err:
        raise DatasetError(not_utf8(path, err)) from None
    except csv.Error as err:
        raise DatasetError(f"{path}: malformed CSV ({err})") from None


def read_train_ids(path: Path) -> list[str]:
    """Training ids from a ``.csv`` with a ``video_id`` column or a one-id-a-line text file."""
    if path.suffix.lower() == ".csv":
        ids = [row["video_id"] for row in _read_csv(path, ["video_id"])]
    else:
        try:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as err:
            raise DatasetError(not_utf8(path, err)) from None
    ids = [i for i in ids if i]
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise DatasetError(f"{path}: video id(s) listed twice: {dup[:5]}")
    if not ids:
        raise DatasetError(f"{path}: no video ids")
    return ids


def _captions_by_video(path: Path) -> dict[str, list[str]]:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise DatasetError(f"{path}: expected an object with a 'sentences' list")
    rows: dict[str, list[tuple[int, int, str]]] = {}
    for i, item in enumerate(data["sentences"]):
        if not isinstance(item, dict) or "video_id" not in item or "caption" not in item:
            raise DatasetError(f"{path}: sentences[{i}] lacks 'video_id' or 'caption'")
        sen_id = item.get("sen_id", i)
        if not isinstance(sen_id, int):
            raise DatasetError(f"{path}: sentences[{i}].sen_id is not an integer: {sen_id!r}")
        rows.setdefault(str(item["video_id"]), []).append((sen_id, i, str(item["caption"]).strip()))
    # sen_id order (file order breaks ties) so a reshuffled json gives the same caption_index.
    return {vid: [text for _, _, text in sorted(r)] for vid, r in rows.items()}


def load_msrvtt(config: MsrvttConfig) -> Annotations:
    """Read MSR-VTT's annotation files and locate its video files."""
    data_json = require_file(config.data_json, "prepare.datasets.msrvtt.data_json")
    train_list = require_file(config.train_list, "prepare.datasets.msrvtt.train_list")
    test_csv = require_file(config.test_csv, "prepare.datasets.msrvtt.test_csv")
    train_ids = read_train_ids(train_list)
    by_video = _captions_by_video(data_json)
    test_rows = _read_csv(test_csv, ["video_id", "sentence"])
    test_ids = [r["video_id"] for r in test_rows]
    if len(set(test_ids)) != len(test_ids):
        raise DatasetError(f"{test_csv}: a video id appears on more than one row")
    check_disjoint({"train": train_ids, "test": test_ids}, "msrvtt")

    texts: dict[str, list[str]] = {}
    for vid in train_ids:
        if not by_video.get(vid):
            raise DatasetError(f"{data_json}: no sentences for training video {vid!r} "
                               f"(listed in {train_list})")
        texts[vid] = by_video[vid]
    for row in test_rows:
        if not row["sentence"]:
            raise DatasetError(f"{test_csv}: empty sentence for video {row['video_id']!r}")
        texts[row["video_id"]] = [row["sentence"]]

    index = video_index(config.video_dir, "prepare.source.videos")
    videos = [locate(index, vid, "train", [vid]) for vid in train_ids]
    videos += [locate(index, vid, "test", [vid]) for vid in test_ids]
    return Annotations("msrvtt", videos, texts)
