"""Stage clean_tags: parse, clean and merge all raw tag answers into tags.parquet + metrics.

With ``released.tags`` set, the tags come from the authors' annotation files instead (the raw
files are then empty placeholders): :mod:`pipeline.released.tags` matches them to the prepared
items, and ``prepare.on_missing: skip`` turns unmatched entries into counted skips.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import ConfigError, load_params, load_section
from pipeline.released.config import ReleasedConfig
from pipeline.tags.build import build_tags
from pipeline.tags.clean import CleanConfig
from pipeline.tags.pos import PosTaggerMissing
from stages.common import remove_stale, setup_logging

# The params this stage reads (dvc.yaml contract): its section, where the released tags are,
# and the dataset's on_missing (skip = counted skips of unmatched released entries).
PARAMS = {"clean_tags": CleanConfig, "released": ReleasedConfig, "prepare.on_missing": None}

app = typer.Typer(add_completion=False)


def on_missing(params: Path) -> str:
    value = (load_params(params).get("prepare") or {}).get("on_missing")
    if value not in ("raise", "skip"):
        raise ConfigError(f"{params}: prepare.on_missing must be raise or skip, got {value!r}")
    return value


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (clean_tags, released, prepare.on_missing)"),
    text_raw: list[Path] = typer.Option([], help="raw textual answers, one file per temperature"),
    video_raw: list[Path] = typer.Option([], help="raw visual answers, one file per temperature"),
    captions: Path = typer.Option(..., help="data/prepared/captions.parquet (textual splits)"),
    videos: Path = typer.Option(..., help="data/prepared/videos.parquet (visual splits)"),
    out: Path = typer.Option(..., help="data/tags/tags.parquet"),
    metrics: Path = typer.Option(..., help="metrics/tags.json"),
) -> None:
    setup_logging()
    remove_stale(out, metrics)
    try:
        released = load_section(ReleasedConfig, "released", params)
        if released.uses_released_tags:
            from pipeline.released.tags import build_released_tags

            tags = build_released_tags(released, captions, videos, out, metrics, on_missing(params) == "skip")
            typer.echo(f"clean_tags: {len(tags)} items imported from {released.tags} -> {out}")
            return
        cfg = load_section(CleanConfig, "clean_tags", params)
        tags = build_tags(cfg, text_raw, video_raw, captions, videos, out, metrics)
    except (ConfigError, PosTaggerMissing, ValueError, FileNotFoundError) as err:  # bad inputs: one line
        typer.echo(f"clean_tags: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"clean_tags: {len(tags)} items -> {out}")


if __name__ == "__main__":
    app()
