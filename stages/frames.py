"""Stage ``frames``: sample CLIP and VLM frames of every video into ``--out``.

    python -m stages.frames --params params.yaml --videos data/prepared/videos.parquet --out data/frames
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.frames import FramesConfig, FramesError, extract_frames
from pipeline.io import read_parquet, write_json
from stages.common import stage_config

PARAMS = {"frames": FramesConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (section 'frames')"),
    videos: Path = typer.Option(..., help="videos.parquet from the prepare stage"),
    out: Path = typer.Option(..., help="frames directory to write (replaced atomically)"),
    metrics: Path | None = typer.Option(None, help="also write the summary here (DVC metric)"),
) -> None:
    """Decode uniformly sampled frames: CLIP crops (.npy) and VLM JPEGs (Parquet)."""
    config = stage_config(FramesConfig, "frames", params)
    # Relative video paths are relative to the repository root, where DVC runs stages.
    try:
        summary = extract_frames(config, read_parquet(videos), out, root=Path.cwd())
    except FramesError as err:  # a named bad video: a clear message, not a traceback
        typer.echo(f"frames: {err}", err=True)
        raise typer.Exit(1) from None
    if metrics is not None:
        write_json(summary, metrics)
    typer.echo(f"frames: {summary['ok']} ok, {summary['skipped']} skipped, "
               f"{summary['padded']} padded -> {out}")


if __name__ == "__main__":
    app()
