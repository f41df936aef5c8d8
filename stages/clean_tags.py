"""Stage clean_tags: parse, clean and merge all raw tag answers into tags.parquet + metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import ConfigError, load_section
from pipeline.tags.build import build_tags
from pipeline.tags.clean import CleanConfig
from pipeline.tags.pos import PosTaggerMissing

PARAMS = {"clean_tags": CleanConfig}  # the params sections this stage reads (dvc.yaml contract)

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section clean_tags)"),
    text_raw: list[Path] = typer.Option([], help="raw textual answers, one file per temperature"),
    video_raw: list[Path] = typer.Option([], help="raw visual answers, one file per temperature"),
    captions: Path = typer.Option(..., help="data/prepared/captions.parquet (textual splits)"),
    videos: Path = typer.Option(..., help="data/prepared/videos.parquet (visual splits)"),
    out: Path = typer.Option(..., help="data/tags/tags.parquet"),
    metrics: Path = typer.Option(..., help="metrics/tags.json"),
) -> None:
    try:
        cfg = load_section(CleanConfig, "clean_tags", params)
        tags = build_tags(cfg, text_raw, video_raw, captions, videos, out, metrics)
    except (ConfigError, PosTaggerMissing, ValueError, FileNotFoundError) as err:  # bad inputs: one line
        typer.echo(f"clean_tags: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"clean_tags: {len(tags)} items -> {out}")


if __name__ == "__main__":
    app()
