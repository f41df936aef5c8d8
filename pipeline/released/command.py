"""``macvr import-tags`` / ``export-tags`` / ``tags-diff``: the authors' tag files outside the DAG.

- ``import-tags FOLDER``: the authors' files matched to prepared captions/videos -> a
  ``tags.parquet`` (what ``clean_tags`` writes with ``released.tags`` set).
- ``export-tags``: a ``tags.parquet`` in the official formats (MSR-VTT CSVs or a concepts JSON),
  e.g. to train the official code with the project's tags.
- ``tags-diff A B``: two ``tags.parquet`` compared item by item (:mod:`.compare_tags`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.released.config import resolve_tag_format


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


def import_tags(
    folder: Path = typer.Argument(..., help="folder of the authors' annotation files with tags"),
    captions: Path = typer.Option(Path("data/prepared/captions.parquet"), help="prepared captions"),
    videos: Path = typer.Option(Path("data/prepared/videos.parquet"), help="prepared videos"),
    out: Path = typer.Option(..., help="tags.parquet to write"),
    fmt: str = typer.Option("auto", "--format", help="auto | csv | concepts"),
    csv_files: list[str] = typer.Option(["training_9k.csv", "testing.csv"], "--csv-file", help="csv format files"),
    concepts_file: str = typer.Option("all_concepts_llama3.json", help="concepts format file"),
    skip: bool = typer.Option(False, help="skip (and count) unmatched or unparsable entries instead of failing"),
) -> None:
    """Import the authors' tags for the prepared items into a tags.parquet."""
    import pyarrow as pa

    from pipeline.io import read_parquet, write_parquet
    from pipeline.released.tags import import_tags as run_import
    from pipeline.tags.build import TAGS_SCHEMA

    try:
        caps = read_parquet(captions, columns=["caption_id", "video_id", "split", "caption_index", "text"])
        vids = read_parquet(videos, columns=["video_id", "split", "dataset"])
        fmt = resolve_tag_format(fmt, str(vids["dataset"].iloc[0]) if len(vids) else "", "--format")
        files = [folder / f for f in csv_files] if fmt == "csv" else [folder / concepts_file]
        imported = run_import(fmt, files, caps, vids, skip)
        write_parquet(pa.Table.from_pylist(imported.rows, schema=TAGS_SCHEMA), out)
    except (ValueError, OSError) as err:
        _fail(err)
    typer.echo(json.dumps(imported.report, indent=1))


def export_tags(
    tags: Path = typer.Option(Path("data/tags/tags.parquet"), help="tags.parquet to export"),
    captions: Path = typer.Option(Path("data/prepared/captions.parquet"), help="prepared captions"),
    videos: Path = typer.Option(Path("data/prepared/videos.parquet"), help="prepared videos"),
    fmt: str = typer.Option(..., "--format", help="csv (MSR-VTT: one file per split) | concepts (one JSON)"),
    out: Path = typer.Option(..., help="output folder"),
    train_file: str = typer.Option("training_9k.csv", help="csv: the training split's file"),
    test_file: str = typer.Option("testing.csv", help="csv: the test split's file"),
    concepts_file: str = typer.Option("all_concepts_llama3.json", help="concepts: the file name"),
) -> None:
    """Write a tags.parquet in the official formats (readable by the official loaders and import-tags)."""
    from pipeline.io import atomic_path, read_parquet
    from pipeline.released.tags import export_concepts, export_csv
    from pipeline.tags.table import read_tags

    try:
        table = read_tags(tags)
        caps = read_parquet(captions, columns=["caption_id", "video_id", "split", "caption_index", "text"])
        vids = read_parquet(videos, columns=["video_id", "split"])
        out.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            names = {"train": train_file, "test": test_file, "val": "val.csv"}
            for split in [s for s in ("train", "val", "test") if (caps["split"] == s).any()]:
                with atomic_path(out / names[split]) as tmp:
                    export_csv(table.visual, table.textual, caps, split).to_csv(tmp, index=False)
                typer.echo(f"{split}: {out / names[split]}")
        elif fmt == "concepts":
            data = export_concepts(table.visual, table.textual, caps, vids)
            with atomic_path(out / concepts_file) as tmp:
                tmp.write_text(json.dumps(data, ensure_ascii=False))
            typer.echo(f"{len(data)} videos: {out / concepts_file}")
        else:
            raise ValueError(f"--format must be csv or concepts, got {fmt!r}")
    except (ValueError, OSError) as err:
        _fail(err)


def tags_diff(
    a: Path = typer.Argument(..., help="a tags.parquet (e.g. the project's generated tags)"),
    b: Path = typer.Argument(..., help="another tags.parquet (e.g. the authors', from import-tags)"),
    first: int = typer.Option(8, help="M: also compare the first M tags of each item (what inference reads)"),
    exact: bool = typer.Option(False, help="compare tags verbatim (default: lower-cased, whitespace collapsed)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the full comparison here"),
) -> None:
    """Compare two tag sets item by item: overlap per item, tags per item, vocabularies."""
    from pipeline.io import write_json
    from pipeline.released.compare_tags import compare_tags, summary_lines
    from pipeline.tags.table import read_tags

    try:
        result = compare_tags(read_tags(a), read_tags(b), first, exact)
        if json_out is not None:
            write_json({"a": str(a), "b": str(b), "first": first, "exact": exact, **result}, json_out)
    except (ValueError, OSError) as err:
        _fail(err)
    typer.echo(f"A = {a}\nB = {b}")
    for line in summary_lines(result, first):
        typer.echo(line)
