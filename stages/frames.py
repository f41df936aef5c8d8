"""Stage ``frames``: sample CLIP and VLM frames of every video into ``--out``.

    python -m stages.frames --params params.yaml --videos data/prepared/videos.parquet --out data/frames

Sharded over several workers (processes, GPUs' hosts, nodes) with the same arguments:
``torchrun --nproc_per_node=4 -m stages.frames ...`` (see :mod:`pipeline.sharding`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.frames import FramesConfig, extract_frames
from pipeline.io import read_parquet, write_json
from pipeline.sharding import Shard, current_shard, finish
from stages.common import remove_stale, run, stage_config

PARAMS = {"frames": FramesConfig}  # the params.yaml sections this stage reads
app = typer.Typer(add_completion=False)


def _extract(config: FramesConfig, videos: Path, out: Path, metrics: Path | None, shard: Shard) -> dict | None:
    if not videos.is_file():
        raise FileNotFoundError(f"{videos}: videos table not found (did the prepare stage run?)")
    # Relative video paths are relative to the repository root, where DVC runs stages.
    summary = extract_frames(config, read_parquet(videos), out, root=Path.cwd(), shard=shard)
    if metrics is not None and summary is not None:
        write_json(summary, metrics)
    return summary


@app.command()
def main(
    params: Path = typer.Option(..., help="params.yaml (section 'frames')"),
    videos: Path = typer.Option(..., help="videos.parquet from the prepare stage"),
    out: Path = typer.Option(..., help="frames directory to write (replaced atomically)"),
    metrics: Path | None = typer.Option(None, help="also write the summary here (DVC metric)"),
) -> None:
    """Decode sampled frames: CLIP crops (.npy) and VLM JPEGs (Parquet)."""
    config = stage_config(FramesConfig, "frames", params, checks=PARAMS)
    remove_stale(out, metrics)
    shard = run("frames", current_shard)
    try:
        summary = run("frames", _extract, config, videos, out, metrics, shard)
    finally:
        finish(shard)
    if summary is not None:  # rank 0 (or the only process)
        typer.echo(f"frames: {summary['ok']} ok, {summary['skipped']} skipped, "
                   f"{summary['padded']} padded -> {out}")


if __name__ == "__main__":
    app()
