"""The authors' tags: read their annotation files, match them to the prepared items, and back.

Two formats, as the official loaders read them (adrianofragomeni/MAC-VR-code,
``src/tvr/dataloaders/``):

- ``csv`` (MSR-VTT ``anns/<llm>/training_9k.csv``, ``testing.csv``): a header row, then one row
  per caption; columns *by position*: video id, caption, textual tags, visual tags, each tag
  list a Python list literal (``ast.literal_eval``). The video's visual tags repeat on each of its
  rows. Rows are matched to the prepared captions by video id and text (whitespace-normalised;
  a video's repeated identical captions are matched in order).
- ``concepts`` (DiDeMo / ActivityNet ``all_concepts_llama3.json``): ``{video_id: [visual tags
  literal, textual tags literal]}``, one entry per video; the textual tags belong to the video's
  one caption (its paragraph). Keys are matched to the prepared video ids, also with a video file
  extension removed on either side (DiDeMo ids carry one).

Tags are kept verbatim and in their stored order: the official test reads the first M in that
order, training draws N at random. A prepared item without an entry, an entry without a prepared
item and an unparsable entry are errors listing every offender; with ``prepare.on_missing: skip``
they are skipped and counted (the item gets no tags; ``metrics/tags.json`` says how many).
"""

from __future__ import annotations

import ast
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data.locate import strip_video_extension
from pipeline.released.config import ReleasedConfig

log = logging.getLogger(__name__)

SHOWN = 50  # offenders named per problem kind in an error message


class ReleasedTagsError(ValueError):
    """The authors' tag files cannot be read or do not match the prepared data."""


def normalise_text(text: str) -> str:
    """Caption text as matched: runs of whitespace collapsed, ends stripped (case kept)."""
    return " ".join(str(text).split())


def parse_tag_list(value: Any, where: str) -> list[str]:
    """A stored tag list: a Python list literal (the official loaders' ``ast.literal_eval``), or
    a JSON list. Tags must be strings; they are kept verbatim."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise ReleasedTagsError(f"{where}: not a tag list literal ({type(err).__name__}): {shown!r}") from None
    if not isinstance(parsed, (list, tuple)):
        raise ReleasedTagsError(f"{where}: expected a list of tags, got {type(parsed).__name__}")
    bad = [t for t in parsed if not isinstance(t, str)]
    if bad:
        raise ReleasedTagsError(f"{where}: tags must be strings, got {bad[0]!r}")
    return list(parsed)


@dataclass
class Problems:
    """Offenders by kind (``missing``, ``extra``, ``unparsable``, ``duplicate``), in order found."""

    by_kind: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, what: str) -> None:
        self.by_kind[kind].append(what)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.by_kind.items())}

    def __bool__(self) -> bool:
        return any(self.by_kind.values())

    def message(self, source: str) -> str:
        parts = []
        for kind, items in sorted(self.by_kind.items()):
            shown = "; ".join(items[:SHOWN]) + (f"; ... and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
            parts.append(f"{len(items)} {kind}: {shown}")
        return (f"{source} do not match the prepared data ({' | '.join(parts)}); fix the files, or set "
                f"prepare.on_missing: skip to leave those items without tags (counted in metrics/tags.json)")


@dataclass(frozen=True)
class CsvRow:
    file: str
    row: int          # 1-based data row (the header is row 0)
    video_id: str
    caption: str
    textual: Any      # the raw cell (parsed later, so one bad cell does not hide the others)
    visual: Any


def read_csv_rows(path: Path) -> list[CsvRow]:
    """Every data row of one MSR-VTT-format file (read like the official ``pd.read_csv``)."""
    if not path.is_file():
        raise ReleasedTagsError(f"{path}: released tag file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReleasedTagsError(f"{path}: not a readable CSV ({err})") from None
    if df.shape[1] < 4:
        raise ReleasedTagsError(f"{path}: {df.shape[1]} columns, expected at least 4 (video id, caption, "
                                f"textual tags, visual tags; header {list(df.columns)})")
    values = df.iloc[:, :4].to_numpy()
    return [CsvRow(path.name, i + 1, str(v).strip(), str(c), t, a) for i, (v, c, t, a) in enumerate(values)]


def read_concepts(path: Path) -> list[tuple[str, Any]]:
    """``(video_id, entry)`` pairs of a concepts file, in file order (duplicate keys kept, to report)."""
    if not path.is_file():
        raise ReleasedTagsError(f"{path}: released tag file not found")
    try:
        pairs = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=lambda kv: kv)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReleasedTagsError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(pairs, list) or (pairs and not isinstance(pairs[0], tuple)):
        raise ReleasedTagsError(f"{path}: expected an object {{video_id: [visual tags, textual tags]}}")
    return [(str(k), v) for k, v in pairs]


@dataclass
class MatchResult:
    """Per item tags (prepared ids), what was matched, and what did not fit."""

    visual: dict[str, list[str]]
    textual: dict[str, list[str]]
    problems: Problems
    counts: dict[str, int]


def _caption_slots(captions: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(video_id, normalised text) -> caption ids in caption_index order (consumed by matches)."""
    ordered = captions.sort_values(["video_id", "caption_index"], kind="stable")
    slots: dict[tuple[str, str], list[str]] = defaultdict(list)
    for cid, vid, text in zip(ordered["caption_id"], ordered["video_id"], ordered["text"]):
        slots[(str(vid), normalise_text(text))].append(str(cid))
    return slots


def match_csv(rows: list[CsvRow], captions: pd.DataFrame, videos: pd.DataFrame) -> MatchResult:
    """Textual tags per prepared caption and visual tags per prepared video from CSV rows."""
    slots = {k: list(v) for k, v in _caption_slots(captions).items()}
    known_videos = set(videos["video_id"].astype(str))
    problems = Problems()
    textual: dict[str, list[str]] = {}
    visual: dict[str, list[str]] = {}
    first_row_caption: dict[str, str] = {}
    disagree: set[str] = set()
    unparsable_captions: set[str] = set()
    unparsable_videos: set[str] = set()
    for r in rows:
        where = f"{r.file} row {r.row} ({r.video_id})"
        if r.video_id not in known_videos:
            problems.add("extra", f"{where}: video not in the prepared data")
            continue
        queue = slots.get((r.video_id, normalise_text(r.caption)))
        if not queue:
            shown = r.caption if len(r.caption) <= 50 else r.caption[:47] + "..."
            problems.add("extra", f"{where}: no prepared caption {shown!r} left for this video")
            continue
        cid = queue.pop(0)
        try:
            tags_t = parse_tag_list(r.textual, f"{where} textual tags")
            tags_v = parse_tag_list(r.visual, f"{where} visual tags")
        except ReleasedTagsError as err:
            problems.add("unparsable", str(err))
            unparsable_captions.add(cid)
            unparsable_videos.add(r.video_id)
            continue
        textual[cid] = tags_t
        first_row_caption.setdefault(r.video_id, cid)
        if r.video_id not in visual:
            visual[r.video_id] = tags_v
        elif visual[r.video_id] != tags_v:
            disagree.add(r.video_id)
    for cid, vid in zip(captions["caption_id"].astype(str), captions["video_id"].astype(str)):
        if cid not in textual and cid not in unparsable_captions:
            problems.add("missing", f"caption {cid} (video {vid}) has no row")
    for vid in videos["video_id"].astype(str):
        if vid not in visual and vid not in unparsable_videos:
            problems.add("missing", f"video {vid} has no row (no visual tags)")
    if disagree:
        log.warning("%d videos have different visual tags on different rows (e.g. %s); the first row's are "
                    "used (the official test reads each row's own)", len(disagree), sorted(disagree)[0])
    # QB-Norm's t2v querybank is each training video's first caption: the official loader takes
    # the first row, the project the lowest caption_index. Count where they differ.
    first_index = captions.sort_values("caption_index", kind="stable").drop_duplicates("video_id")
    lowest = dict(zip(first_index["video_id"].astype(str), first_index["caption_id"].astype(str)))
    first_differs = sum(1 for vid, cid in first_row_caption.items() if lowest.get(vid) != cid)
    if first_differs:
        log.warning("%d videos' first row is not their first prepared caption: QB-Norm's text querybank "
                    "(first caption per training video) differs from the official one for them", first_differs)
    counts = {"rows": len(rows), "visual_disagreements": len(disagree),
              "first_row_not_first_caption": first_differs}
    return MatchResult(visual, textual, problems, counts)


def paragraph_captions(captions: pd.DataFrame, where: str) -> dict[str, str]:
    """video id -> its one caption id: the concepts format keeps one textual tag list per video
    (its paragraph), so several captions for a video are refused."""
    captions_of: dict[str, list[str]] = defaultdict(list)
    for cid, vid in zip(captions["caption_id"].astype(str), captions["video_id"].astype(str)):
        captions_of[vid].append(cid)
    several = sorted(v for v, cs in captions_of.items() if len(cs) > 1)
    if several:
        raise ReleasedTagsError(f"{where}: the concepts format holds one textual tag list per video (its paragraph), "
                                f"but {len(several)} prepared videos have several captions (e.g. {several[0]}); "
                                "use the csv format for per-caption tags")
    return {vid: cs[0] for vid, cs in captions_of.items()}


def match_concepts(entries: list[tuple[str, Any]], file: str, captions: pd.DataFrame,
                   videos: pd.DataFrame) -> MatchResult:
    """Visual tags per video and textual tags per (the video's one) caption from a concepts file."""
    known = [str(v) for v in videos["video_id"]]
    by_id = {v: v for v in known}
    by_stem: dict[str, list[str]] = defaultdict(list)
    for v in known:
        by_stem[strip_video_extension(v)].append(v)
    caption_of = paragraph_captions(captions, file)
    problems = Problems()
    visual: dict[str, list[str]] = {}
    textual: dict[str, list[str]] = {}
    seen: Counter[str] = Counter()
    for key, entry in entries:
        where = f"{file} [{key!r}]"
        vid = by_id.get(key)
        if vid is None:
            stems = by_stem.get(strip_video_extension(key), [])
            vid = stems[0] if len(stems) == 1 else None
        if vid is None:
            problems.add("extra", f"{where}: video not in the prepared data")
            continue
        seen[vid] += 1
        if seen[vid] > 1:
            problems.add("duplicate", f"{where}: a second entry for video {vid}")
            continue
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            problems.add("unparsable", f"{where}: expected [visual tags, textual tags], got {str(entry)[:60]!r}")
            continue
        try:
            tags_v = parse_tag_list(entry[0], f"{where} visual tags")
            tags_t = parse_tag_list(entry[1], f"{where} textual tags")
        except ReleasedTagsError as err:
            problems.add("unparsable", str(err))
            continue
        visual[vid] = tags_v
        if vid in caption_of:
            textual[caption_of[vid]] = tags_t
    for vid in known:
        if vid not in seen:
            problems.add("missing", f"video {vid} has no entry")
    return MatchResult(visual, textual, problems, {"entries": len(entries)})


@dataclass(frozen=True)
class ImportedTags:
    """``tags.parquet`` rows (prepared order) and what the import saw (for ``metrics/tags.json``)."""

    rows: list[dict[str, Any]]
    report: dict[str, Any]


def import_tags(fmt: str, files: list[Path], captions: pd.DataFrame, videos: pd.DataFrame,
                skip: bool) -> ImportedTags:
    """Read the authors' files of ``fmt`` and match them to the prepared ``captions``/``videos``.

    ``skip``: leave unmatched / unparsable entries out (counted) instead of failing.
    """
    if fmt == "csv":
        rows = [r for f in files for r in read_csv_rows(f)]
        result = match_csv(rows, captions, videos)
    elif fmt == "concepts":
        if len(files) != 1:
            raise ValueError(f"the concepts format reads one file, got {len(files)}")
        result = match_concepts(read_concepts(files[0]), files[0].name, captions, videos)
    else:
        raise ValueError(f"unknown released tag format {fmt!r} (csv or concepts)")
    source = ", ".join(str(f) for f in files)
    if result.problems:
        if not skip:
            raise ReleasedTagsError(result.problems.message(source))
        log.warning("released tags: skipped %s", result.problems.counts())
    out = []
    for vid, split in zip(videos["video_id"].astype(str), videos["split"].astype(str)):
        if vid in result.visual:
            out.append({"item_id": vid, "modality": "visual", "split": split, "tags": result.visual[vid]})
    for cid, split in zip(captions["caption_id"].astype(str), captions["split"].astype(str)):
        if cid in result.textual:
            out.append({"item_id": cid, "modality": "textual", "split": split, "tags": result.textual[cid]})
    report = {"format": fmt, "files": [f.name for f in files], **result.counts,
              "skipped": result.problems.counts(),
              "items_without_tags": {"visual": int(len(videos) - len(result.visual)),
                                     "textual": int(len(captions) - len(result.textual))}}
    return ImportedTags(out, report)


def tag_literal(tags: list[str]) -> str:
    """A tag list as the official files store it (a Python literal ``ast.literal_eval`` reads)."""
    return repr([str(t) for t in tags])


def export_csv(visual: dict[str, list[str]], textual: dict[str, list[str]], captions: pd.DataFrame,
               split: str) -> pd.DataFrame:
    """One split's rows in the MSR-VTT format (video id, sentence, textual tags, visual tags)."""
    part = captions[captions["split"] == split]  # prepared order
    return pd.DataFrame({
        "video_id": part["video_id"].astype(str).to_numpy(),
        "sentence": part["text"].astype(str).to_numpy(),
        "textual_tags": [tag_literal(textual.get(str(c), [])) for c in part["caption_id"]],
        "visual_tags": [tag_literal(visual.get(str(v), [])) for v in part["video_id"]],
    })


def export_concepts(visual: dict[str, list[str]], textual: dict[str, list[str]], captions: pd.DataFrame,
                    videos: pd.DataFrame) -> dict[str, list[str]]:
    """``{video_id: [visual literal, textual literal]}`` (one caption per video required)."""
    caption_of = paragraph_captions(captions, "export")
    return {vid: [tag_literal(visual.get(vid, [])), tag_literal(textual.get(caption_of.get(vid, ""), []))]
            for vid in videos["video_id"].astype(str)}


def build_released_tags(cfg: ReleasedConfig, captions_path: Path, videos_path: Path, out_path: Path,
                        metrics_path: Path, skip: bool) -> pd.DataFrame:
    """``clean_tags`` with ``released.tags`` set: import, write ``tags.parquet`` and the tag metrics
    (the paper's Tab. 1 statistics per split, plus what the import matched and skipped)."""
    import pyarrow as pa

    from pipeline.io import read_parquet, write_json, write_parquet
    from pipeline.tags.build import TAGS_SCHEMA
    from pipeline.tags.stats import tag_statistics

    captions = read_parquet(captions_path, columns=["caption_id", "video_id", "split", "caption_index", "text"])
    videos = read_parquet(videos_path, columns=["video_id", "split", "dataset"])
    dataset = str(videos["dataset"].iloc[0]) if len(videos) else ""
    fmt = cfg.tag_format(dataset)
    folder = cfg.resolve(str(cfg.tags), "released.tags")
    if not folder.is_dir():
        raise ReleasedTagsError(f"released.tags: {folder} is not a folder (the authors' annotation files with tags)")
    names = list(cfg.csv_files) if fmt == "csv" else [cfg.concepts_file]
    imported = import_tags(fmt, [folder / n for n in names], captions, videos, skip)
    table = pa.Table.from_pylist(imported.rows, schema=TAGS_SCHEMA)
    write_parquet(table, out_path)
    tags = table.to_pandas()
    write_json({**tag_statistics(tags), "released": {"folder": str(folder), **imported.report}}, metrics_path)
    return tags
