"""Stage tag_video@tNN: visual tags of every video's VLM frames at one temperature."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config import ConfigError, load_section
from pipeline.released.config import ReleasedConfig
from pipeline.tags.raw import write_raw
from pipeline.tags.cache import CacheError
from pipeline.tags.client import ServerUnreachable
from pipeline.tags.failures import TaggingFailed
from pipeline.tags.server import ServerStartError
from pipeline.tags.tag_video import TagVideoConfig, tag_video
from stages.common import remove_stale, setup_logging

# The params this stage reads (dvc.yaml contract): its section, and whether the tags are the
# authors' released ones (then it does no work: see pipeline.released).
PARAMS = {"tag_video": TagVideoConfig, "released.tags": None}

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section tag_video)"),
    frames: Path = typer.Option(..., help="data/frames/vlm_frames.parquet"),
    temperature: float = typer.Option(..., help="sampling temperature (the foreach item)"),
    cache: Path = typer.Option(..., help="answer cache (SQLite), kept outside DVC outs"),
    out: Path = typer.Option(..., help="raw responses Parquet, e.g. data/tags/raw/video_t07.parquet"),
) -> None:
    # Expected failures end in one message, no traceback: bad params or inputs (ValueError, missing
    # files), no server, or more failed items than allowed (a summary paragraph).
    setup_logging()
    remove_stale(out)
    try:
        if load_section(ReleasedConfig, "released", params).uses_released_tags:
            write_raw([], out)  # an empty placeholder: clean_tags imports the released tags
            typer.echo(f"tag_video: released.tags is set; no tagging (empty {out})")
            return
        cfg = load_section(TagVideoConfig, "tag_video", params)
        tag_video(cfg, frames, temperature, cache, out)
    except (ConfigError, CacheError, ServerUnreachable, ServerStartError, TaggingFailed,
            ValueError, FileNotFoundError) as err:
        typer.echo(f"tag_video: {err}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
