"""``macvr index``: build a searchable gallery (see :mod:`pipeline.index.gallery`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def index(
    out: Annotated[Path, typer.Argument(help="Gallery directory to write (replaced whole).")],
    videos: Annotated[Optional[Path], typer.Option(
        help="A folder of video files (searched recursively): frames, visual tags and features are made "
             "here with the params' frames / tag_video / clean_tags settings.")] = None,
    features: Annotated[Optional[Path], typer.Option(
        help="Instead of --videos: a features directory (the pipeline's data/features) and --split.")] = None,
    split: Annotated[str, typer.Option(help="With --features: test, train, val or all.")] = "test",
    model: Annotated[Path, typer.Option(help="Trained checkpoint.")] = Path("models/macvr/model.pt"),
    backbone: Annotated[Path, typer.Option(
        help="The frozen backbone (cached-features checkpoints); unused by fine-tuned checkpoints.")]
        = Path("models/backbone.pt"),
    frames: Annotated[Optional[Path], typer.Option(
        help="With --features and a fine-tuned checkpoint: the frames directory it re-encodes.")] = None,
    tags: Annotated[Optional[Path], typer.Option(
        help="With --features: tags.parquet (shown with each hit; re-encoded by fine-tuned checkpoints).")]
        = Path("data/tags/tags.parquet"),
    params: Annotated[Path, typer.Option(help="params.yaml (sections search, frames, tag_video, clean_tags).")]
        = Path("params.yaml"),
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (search.device).")] = "auto",
    batch: Annotated[int, typer.Option(min=1, help="Videos per backbone batch.")] = 64,
) -> None:
    """Index a gallery once; then `macvr search --index OUT "query"` ranks it (two-stage when large)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from pipeline.device import resolve_device
    from pipeline.index.gallery import build_gallery

    try:
        where = resolve_device(device, "--device")
        tags_path = tags if (features is not None and tags is not None and tags.is_file()) else None
        meta = build_gallery(out, model, params, videos_dir=videos, features=features, split=split,
                             backbone=backbone, frames_dir=frames, tags_path=tags_path, device=where, batch=batch)
    except (ValueError, OSError, RuntimeError) as err:
        typer.echo(f"index: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{out}: {meta['videos']} videos indexed ({meta['variant']}); "
               f"search with: macvr search --index {out} \"a query\"")
